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
_LINE = re.compile(LINE_ID)
_SHA = re.compile(SHA256)
_VERDICTS = frozenset(("pass", "fail", "error"))
Row = tuple[Any, ...]


class Malformed(ValueError):
    """The message breaks the contract; the text says how."""


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError
    return value


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError
    return float(value)


def _row(result: Any) -> Row:
    if not isinstance(result, dict):
        raise ValueError
    captured_at = datetime.fromisoformat(result["captured_at"])
    if captured_at.utcoffset() is None:
        raise ValueError
    line_id = result["line_id"]
    if not isinstance(line_id, str) or not _LINE.match(line_id):
        raise ValueError
    verdict = result["verdict"]
    if verdict not in _VERDICTS:
        raise ValueError
    program_id = result.get("program_id")
    revision = result.get("program_revision")
    if revision is not None and (type(revision) is not int or revision < 1):
        raise ValueError
    sha = result.get("capture_sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA.match(sha)):
        raise ValueError
    defects = result.get("defects") or []
    if not isinstance(defects, list) or len(defects) > MAX_DEFECTS:
        raise ValueError
    for defect in defects:
        box = defect["bbox"]
        if any(type(box[k]) is not int or box[k] < 0 for k in ("x", "y", "width", "height")):
            raise ValueError
        area = _number(defect["area"])
        if area is None or area < 0:
            raise ValueError
        _number(defect.get("score"))
    processing_ms = _number(result.get("processing_ms"))
    if processing_ms is not None and processing_ms < 0:
        raise ValueError
    simulated = result.get("is_simulated", False)
    if not isinstance(simulated, bool):
        raise ValueError
    reason = result.get("reason")
    version = result.get("schema_version", 1)
    if type(version) is not int or version < 1:
        raise ValueError
    extra = {k: v for k, v in result.items() if k not in KNOWN}
    return (
        uuid.UUID(result["result_id"]),
        captured_at,
        line_id,
        _text(result.get("station", ""), 100),
        None if program_id is None else uuid.UUID(program_id),
        revision,
        _text(result.get("part_id", ""), 200),
        verdict,
        _number(result.get("score")),
        orjson.dumps(defects).decode(),
        len(defects),
        processing_ms,
        sha,
        simulated,
        None if reason is None else _text(reason, 2000),
        orjson.dumps(extra).decode() if extra else None,
        version,
    )


def rows(data: bytes) -> list[Row]:
    """The rows of one `results.recorded` message; raises Malformed with the reason."""
    try:
        message = orjson.loads(data)
        results = message["results"]
        if not isinstance(results, list) or not 1 <= len(results) <= MAX_BATCH:
            raise ValueError
        return [_row(result) for result in results]
    except (ValueError, KeyError, TypeError, AttributeError, orjson.JSONDecodeError):
        pass
    # The careful path, only to say what is wrong (or, should the fast checks be stricter
    # than the contract somewhere, to accept it after all).
    try:
        batch = ResultBatch.model_validate_json(data)
    except ValueError as exc:
        raise Malformed(str(exc)[:1000]) from None
    try:
        return [_row(orjson.loads(result.model_dump_json())) for result in batch.results]
    except (ValueError, KeyError, TypeError) as exc:
        raise Malformed(f"a result cannot be stored: {exc}") from None
