"""Bounds that come from the storage types, stated once.

Every body, query, path and cursor model uses these instead of bare `int`, `str`, `float`,
`datetime` or `dict`, so the OpenAPI states each bound and a value the storage cannot hold
(or cannot give back) is a 422 naming the field — never a 500 later, on some read path.

- integers: PostgreSQL `integer` / `bigint` widths;
- text: PostgreSQL `text` and `jsonb` refuse NUL (U+0000) and lone surrogates;
- timestamps: must carry a zone, are normalised to UTC and lie in a window that leaves room
  for arithmetic (a month's partition bounds, a retention cut-off) inside Python's years
  1-9999;
- floats: finite and small enough that `jsonb` gives them back as the same float (it keeps
  `1e20` as the integer 100000000000000000000, which no 64-bit reader takes back);
- JSON: a depth and size limit, and every number and string in it as above.
"""

import math
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, Field, WithJsonSchema

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Beyond 2**53 not every integer is a float; jsonb keeps larger floats as exact integers.
FLOAT_ABS_MAX = 1e15
TIMESTAMP_MIN = datetime(1900, 1, 1, tzinfo=UTC)
TIMESTAMP_MAX = datetime(2200, 1, 1, tzinfo=UTC)
JSON_MAX_DEPTH = 32
JSON_MAX_BYTES = 256 * 1024

Int32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX)]
NonNegativeInt32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
PositiveInt32 = Annotated[int, Field(ge=1, le=INT32_MAX)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
NonNegativeInt64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
PositiveInt64 = Annotated[int, Field(ge=1, le=INT64_MAX)]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False, ge=-FLOAT_ABS_MAX, le=FLOAT_ABS_MAX)]
NonNegativeFloat = Annotated[float, Field(allow_inf_nan=False, ge=0, le=FLOAT_ABS_MAX)]


def no_surrogate(value: str) -> str:
    # A JSON body parsed by the standard library turns a `\ud800` escape into a lone
    # surrogate: not Unicode text, and PostgreSQL (through asyncpg's UTF-8) refuses it.
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogate such as \\ud800)") from None
    return value


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    return value


# NUL-free text; add the length at the use site: `Annotated[NulFreeStr, Field(max_length=200)]`
# (or `Query(max_length=200)` for a query parameter).
# (Lone surrogates are refused too: PostgreSQL cannot hold them either.)
NulFreeStr = Annotated[str, AfterValidator(no_nul), AfterValidator(no_surrogate)]


def check_timestamp(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a time zone (e.g. 2026-01-31T12:00:00Z)")
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError(
            f"must lie between {TIMESTAMP_MIN:%Y-%m-%d} and {TIMESTAMP_MAX:%Y-%m-%d} (UTC)"
        ) from None
    if not TIMESTAMP_MIN <= utc < TIMESTAMP_MAX:
        raise ValueError(
            f"must lie between {TIMESTAMP_MIN:%Y-%m-%d} and {TIMESTAMP_MAX:%Y-%m-%d} (UTC)"
        )
    return utc


# An aware timestamp inside [TIMESTAMP_MIN, TIMESTAMP_MAX), given back in UTC.
Timestamp = Annotated[
    datetime,
    AfterValidator(check_timestamp),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 with a zone, between 1900-01-01 and 2200-01-01 (UTC)",
        }
    ),
]


def check_json(
    value: Any, *, max_depth: int = JSON_MAX_DEPTH, max_bytes: int = JSON_MAX_BYTES
) -> Any:
    """Raise ValueError unless `value` (already parsed) can be stored as `jsonb` and read
    back unchanged: bounded depth and size, NUL-free strings and keys, 64-bit integers,
    finite floats within FLOAT_ABS_MAX."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list) and depth > max_depth:
            raise ValueError(f"is nested deeper than {max_depth} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ValueError("has a key that is not a string")
                no_surrogate(no_nul(key))
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            no_surrogate(no_nul(item))
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise ValueError("has an integer beyond 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item) or abs(item) > FLOAT_ABS_MAX:
                raise ValueError(f"has a number that is not finite or beyond ±{FLOAT_ABS_MAX:g}")
        else:
            raise ValueError(f"has a value of type {type(item).__name__}")
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if size > max_bytes:
        raise ValueError(f"is larger than {max_bytes} bytes as JSON")
    return value


def _json(value: Any) -> Any:
    return check_json(value)


# Free-form JSON kept in a `jsonb` column.
JsonValue = Annotated[Any, AfterValidator(_json)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json)]


# Text PostgreSQL can hold: NUL-free and valid Unicode. Add the length at the use site, as for
# NulFreeStr.
StorableStr = Annotated[str, AfterValidator(no_nul), AfterValidator(no_surrogate)]
