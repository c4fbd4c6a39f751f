"""Generated results, near and beyond every bound, through the ingest's fast path and the
contract: both accept exactly the same ones, and what is accepted is stored in UTC."""

import json
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loupe_catalog.results.rows import Malformed, rows
from loupe_shared.contracts.bounds import FLOAT_ABS_MAX, INT32_MAX, INT64_MAX, INT64_MIN
from loupe_shared.contracts.results import ResultBatch

INTS = st.sampled_from(
    [-1, 0, 1, INT32_MAX, INT32_MAX + 1, INT64_MAX, INT64_MAX + 1, INT64_MIN, INT64_MIN - 1]
) | st.integers(min_value=-(2**70), max_value=2**70)
FLOATS = st.sampled_from(
    [0.0, -0.0, 5e-324, FLOAT_ABS_MAX, -FLOAT_ABS_MAX, FLOAT_ABS_MAX * 1.0000001, 1e20, -1.5]
) | st.floats(allow_nan=False, allow_infinity=False)
NUMBERS = INTS | FLOATS
TEXT = st.text(st.characters(codec="utf-8"), max_size=120) | st.sampled_from(
    ["", "a\x00b", "é" * 100, "é" * 101, "🔍" * 100]
)
VALID_STAMPS = st.sampled_from(
    [
        "1900-01-01T00:00:00Z",
        "1900-01-01T05:30:00+05:30",
        "2199-12-31T23:59:59.999999Z",
        "2200-01-01T01:00:00+02:00",
        "2026-06-01T12:00:00.5-03:00",
    ]
)
STAMPS = (
    VALID_STAMPS
    | VALID_STAMPS
    | st.sampled_from(
        [
            "1900-01-01T00:00:00Z",
            "1900-01-01T05:30:00+05:30",
            "1900-01-01T00:59:59+01:00",
            "1899-12-31T23:59:59.999999Z",
            "2199-12-31T23:59:59.999999Z",
            "2200-01-01T00:00:00Z",
            "2200-01-01T01:00:00+02:00",
            "2199-12-31T23:00:00-01:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2026-06-01T12:00:00",
            "2026-06-01 12:00:00Z",
            "2026-06-01T12:00:00.1234567Z",
        ]
    )
)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)


def _deep(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


EXTRA = JSON | st.sampled_from([_deep(30), _deep(31), _deep(32)])
BOX = st.fixed_dictionaries(
    {"x": INTS, "y": st.just(0), "width": st.just(1), "height": INTS},
    optional={"note": EXTRA},
)
DEFECT = st.fixed_dictionaries(
    {"bbox": BOX, "area": NUMBERS},
    optional={"kind": TEXT, "score": NUMBERS | st.none(), "tool_id": TEXT, "note": EXTRA},
)
RESULT = st.fixed_dictionaries(
    {
        "result_id": st.just("00000000-0000-4000-8000-000000000001"),
        "line_id": st.sampled_from(["line-1", "L:2.a", "line-3", "bad line"]),
        "verdict": st.sampled_from(["pass", "fail", "error"]),
        "captured_at": STAMPS,
    },
    optional={
        "program_id": st.just(str(uuid.UUID(int=5))),
        "program_revision": INTS | st.none(),
        "schema_version": INTS,
        "station": TEXT,
        "part_id": TEXT,
        "score": NUMBERS | st.none(),
        "processing_ms": NUMBERS | st.none(),
        "defects": st.lists(DEFECT, max_size=2),
        "reason": TEXT | st.none(),
        "future": EXTRA,
    },
)


def _accepted_by_contract(data: bytes) -> bool:
    try:
        ResultBatch.model_validate_json(data)
    except ValidationError:
        return False
    return True


@settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(RESULT)
def test_the_fast_path_and_the_contract_accept_the_same_results(result: dict[str, Any]) -> None:
    data = json.dumps({"results": [result]}).encode()
    try:
        stored = rows(data)
    except Malformed:
        assert not _accepted_by_contract(data), result
        return
    assert _accepted_by_contract(data), result
    assert stored[0][1].utcoffset().total_seconds() == 0
