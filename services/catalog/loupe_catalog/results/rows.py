"""Result messages to database rows.

The ingest path is hot (tens of thousands of results a second), so a message is decoded once
with orjson and each result is checked and converted by hand against the contract; only a
message that fails these checks goes through the pydantic model, to name the problem for the
dead-letter subject. Both paths accept exactly what the contract accepts.
"""

import re
import uuid
from datetime import datetime
from typing import Any

import orjson
from asyncpg.pgproto.pgproto import UUID as _FastUUID

from loupe_shared.contracts.bounds import (
    FLOAT_ABS_MAX,
    INT32_MAX,
    INT64_MAX,
    INT64_MIN,
    JSON_MAX_BYTES,
    JSON_MAX_DEPTH,
    TIMESTAMP_MAX,
    TIMESTAMP_MIN,
    check_json,
    check_timestamp,
)
from loupe_shared.contracts.results import LINE_ID, MAX_BATCH, MAX_DEFECTS, SHA256, ResultBatch

COLUMNS = (
    "result_id",
    "captured_at",
    "line_id",
    "station",
    "program_id",
    "program_revision",
    "part_id",
    "verdict",
    "score",
    "defects",
    "defect_count",
    "processing_ms",
    "capture_sha256",
    "is_simulated",
    "reason",
    "extra",
    "schema_version",
)
KNOWN = frozenset(COLUMNS) - {"defect_count", "extra"} | {"defects"}
_BATCH_KNOWN = frozenset(("schema_version", "results"))
_DEFECT_KNOWN = frozenset(("kind", "bbox", "area", "score", "tool_id"))
_BOX = ("x", "y", "width", "height")
_LINE = re.compile(LINE_ID)
_SHA = re.compile(SHA256)
# The RFC 3339 form every publisher writes; anything else is left to the contract's parser.
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")
# The form every publisher writes an id in; asyncpg's UUID (a `uuid.UUID`) parses it in C,
# several times faster than `uuid.UUID`, which is left the rarer spellings it also accepts.
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_VERDICTS = frozenset(("pass", "fail", "error"))
_NO_DEFECTS: list[Any] = []
Row = tuple[Any, ...]


class Malformed(ValueError):
    """The message breaks the contract; the text says how."""


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise ValueError
    return value


def _number(value: Any, low: float = -FLOAT_ABS_MAX) -> float | None:
    if value is None:
        return None
    if type(value) is not float and type(value) is not int:
        raise ValueError
    number = float(value)
    if not low <= number <= FLOAT_ABS_MAX:  # also false for NaN
        raise ValueError
    return number


def _count(value: Any, low: int) -> int:
    if type(value) is not int or not low <= value <= INT32_MAX:
        raise ValueError
    return value


def _uuid(value: Any) -> uuid.UUID:
    if type(value) is not str or len(value) != 36:
        raise ValueError
    if _CANONICAL_UUID.fullmatch(value):
        return _FastUUID(value)
    return uuid.UUID(value)


def _timestamp(stamp: str) -> datetime:
    """`check_timestamp` of a stamp `_TIMESTAMP` matched, shorter for UTC ones."""
    moment = datetime.fromisoformat(stamp)
    if stamp.endswith(("Z", "+00:00")):  # already UTC: only the range to check
        if not TIMESTAMP_MIN <= moment < TIMESTAMP_MAX:
            raise ValueError
        return moment
    return check_timestamp(moment)


def _bounded(value: Any, depth: int) -> None:
    """`check_json` without its size check, for values orjson parsed (so: str, int, float,
    bool, None, list, dict with str keys); `depth` counts from 0 at the top."""
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            raise ValueError
    elif kind is dict:
        if depth >= JSON_MAX_DEPTH:
            raise ValueError
        for key, child in value.items():
            if "\x00" in key:
                raise ValueError
            _bounded(child, depth + 1)
    elif kind is list:
        if depth >= JSON_MAX_DEPTH:
            raise ValueError
        for child in value:
            _bounded(child, depth + 1)
    elif kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError
    elif kind is float:
        if not -FLOAT_ABS_MAX <= value <= FLOAT_ABS_MAX:
            raise ValueError
    elif value is not None and kind is not bool:
        raise ValueError


def _defect(defect: Any) -> None:
    if type(defect) is not dict:
        raise ValueError
    box = defect["bbox"]
    if type(box) is not dict:
        raise ValueError
    for key in _BOX:
        _count(box[key], 0)
    if _number(defect["area"], 0.0) is None:
        raise ValueError
    _number(defect.get("score"))
    _text(defect.get("kind", ""), 100)
    tool_id = defect.get("tool_id")
    if tool_id is not None:
        _text(tool_id, 100)
    if len(box) > 4:
        check_json({k: v for k, v in box.items() if k not in _BOX})
    if len(defect) > 2 and not defect.keys() <= _DEFECT_KNOWN:
        check_json({k: v for k, v in defect.items() if k not in _DEFECT_KNOWN})


def _row(result: Any) -> Row:
    if type(result) is not dict:
        raise ValueError
    stamp = result["captured_at"]
    if type(stamp) is not str or not _TIMESTAMP.fullmatch(stamp):
        raise ValueError
    captured_at = _timestamp(stamp)
    line_id = result["line_id"]
    if not isinstance(line_id, str) or not _LINE.match(line_id):
        raise ValueError
    verdict = result["verdict"]
    if verdict not in _VERDICTS:
        raise ValueError
    program_id = result.get("program_id")
    revision = result.get("program_revision")
    if revision is not None:
        _count(revision, 1)
    sha = result.get("capture_sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA.match(sha)):
        raise ValueError
    defects = result.get("defects", _NO_DEFECTS)
    if type(defects) is not list or len(defects) > MAX_DEFECTS:
        raise ValueError
    for defect in defects:
        _defect(defect)
    processing_ms = _number(result.get("processing_ms"), 0.0)
    simulated = result.get("is_simulated", False)
    if not isinstance(simulated, bool):
        raise ValueError
    reason = result.get("reason")
    version = _count(result.get("schema_version", 1), 1)
    encoded_extra = None
    if not result.keys() <= KNOWN:
        extra = {k: v for k, v in result.items() if k not in KNOWN}
        _bounded(extra, 0)
        encoded = orjson.dumps(extra)
        if len(encoded) > JSON_MAX_BYTES:
            raise ValueError
        encoded_extra = encoded.decode()
    return (
        _uuid(result["result_id"]),
        captured_at,
        line_id,
        _text(result.get("station", ""), 100),
        None if program_id is None else _uuid(program_id),
        revision,
        _text(result.get("part_id", ""), 200),
        verdict,
        _number(result.get("score")),
        orjson.dumps(defects).decode() if defects else "[]",
        len(defects),
        processing_ms,
        sha,
        simulated,
        None if reason is None else _text(reason, 2000),
        encoded_extra,
        version,
    )


def storable(result: Any) -> bool:
    """Whether one result (as orjson parsed it) passes the fast checks: true only for what
    the contract accepts."""
    try:
        _row(result)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return False
    return True


def rows(data: bytes) -> list[Row]:
    """The rows of one `results.recorded` message; raises Malformed with the reason."""
    try:
        message = orjson.loads(data)
        results = message["results"]
        if type(results) is not list or not 1 <= len(results) <= MAX_BATCH:
            raise ValueError
        _count(message.get("schema_version", 1), 1)
        if len(message) > 1 and not message.keys() <= _BATCH_KNOWN:
            check_json({k: v for k, v in message.items() if k not in _BATCH_KNOWN})
        return [_row(result) for result in results]
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        pass
    # The careful path, only to say what is wrong (or, should the fast checks be stricter
    # than the contract somewhere, to accept it after all).
    try:
        batch = ResultBatch.model_validate_json(data)
    except ValueError as exc:
        raise Malformed(str(exc)[:1000]) from None
    try:
        return [_row(orjson.loads(result.model_dump_json())) for result in batch.results]
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise Malformed(f"a result cannot be stored: {exc}") from None
