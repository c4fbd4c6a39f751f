"""Opaque keyset cursors: stable under inserts (a page continues after the last key seen).

A cursor is outside input like any other: whatever it decodes to is checked against the
bounds of the column it is compared with, and anything else — tampered, truncated, from
another listing, out of range — is a 422 "invalid cursor", never a database error.
"""

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from loupe_shared.contracts.bounds import INT32_MAX, INT64_MAX, INT64_MIN, check_timestamp
from loupe_shared.kit.problems import Problem

MAX_PAGE = 200
DEFAULT_PAGE = 50
MAX_KEY = 1000

T = TypeVar("T")


def encode(sort: str, key: Any, id_: str) -> str:
    raw = json.dumps({"s": sort, "k": key, "i": id_}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def page(
    rows: Sequence[T], limit: int, cursor_of: Callable[[T], str]
) -> tuple[list[T], str | None]:
    """The keyset page step: `rows` were fetched with `limit + 1`; the page is the first `limit`
    of them and, when there were more, the cursor `cursor_of` makes of the last one answered."""
    items = list(rows[:limit])
    next_cursor = cursor_of(items[-1]) if len(rows) > limit and items else None
    return items, next_cursor


def invalid_cursor() -> Problem:
    return Problem(
        422,
        "query:cursor: the cursor is not valid for this listing; start again without a cursor.",
        title="Invalid cursor",
        errors=[{"field": "query:cursor", "message": "invalid cursor"}],
    )


def _key_ok(key: Any) -> bool:
    if key is None:
        return True
    if isinstance(key, str):
        return len(key) <= MAX_KEY and "\x00" not in key
    return isinstance(key, int) and not isinstance(key, bool) and INT64_MIN <= key <= INT64_MAX


def decode(cursor: str, sort: str) -> tuple[Any, str]:
    """The key and id a cursor of listing `sort` continues after; the key is None, NUL-free
    text or a 64-bit integer, the id NUL-free text."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if (
            not isinstance(data, dict)
            or data.get("s") != sort
            or not isinstance(data.get("i"), str)
            or len(data["i"]) > MAX_KEY
            or "\x00" in data["i"]
            or not _key_ok(data.get("k"))
        ):
            raise ValueError("cursor shape")
        return data["k"], data["i"]
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise invalid_cursor() from None


def time_key(raw: Any) -> datetime:
    """A timestamp key, as `Timestamp` bounds it; raises ValueError."""
    if not isinstance(raw, str):
        raise ValueError("time key")
    return check_timestamp(datetime.fromisoformat(raw))


def decode_time(cursor: str, listing: str) -> tuple[datetime, uuid.UUID]:
    """The (timestamp, id) a cursor of a listing ordered by time and id continues after."""
    key, id_ = decode(cursor, listing)
    try:
        return time_key(key), uuid.UUID(id_)
    except ValueError:
        raise invalid_cursor() from None


def decode_position(cursor: str | None, listing: str, *, maximum: int = INT32_MAX) -> int | None:
    """The integer position (id, revision number) a cursor of `listing` continues before;
    `maximum` is the column's (INT32_MAX for an integer, INT64_MAX for a bigint)."""
    if not cursor:
        return None
    key, _ = decode(cursor, listing)
    if not isinstance(key, int) or isinstance(key, bool) or not 1 <= key <= maximum:
        raise invalid_cursor()
    return key
