"""Opaque keyset cursors: stable under inserts (a page continues after the last key seen)."""

import base64
import binascii
import json
from typing import Any

from loupe_shared.kit.problems import Problem

MAX_PAGE = 200
DEFAULT_PAGE = 50


def encode(sort: str, key: Any, id_: str) -> str:
    raw = json.dumps({"s": sort, "k": key, "i": id_}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def invalid_cursor() -> Problem:
    return Problem(
        400,
        "The cursor is not valid for this listing; start again without a cursor.",
        title="Invalid cursor",
    )


def decode(cursor: str, sort: str) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if (
            not isinstance(data, dict)
            or data.get("s") != sort
            or not isinstance(data.get("i"), str)
        ):
            raise ValueError("cursor shape")
        return data["k"], data["i"]
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_cursor() from None


def decode_position(cursor: str | None, listing: str) -> int | None:
    """The integer position (id, revision number) a cursor of `listing` continues before."""
    if not cursor:
        return None
    key, _ = decode(cursor, listing)
    if not isinstance(key, int) or isinstance(key, bool):
        raise invalid_cursor()
    return key
