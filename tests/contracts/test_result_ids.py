"""`new_result_id`: the time-ordered result ids the line client recommends (UUID version 7)."""

import time
import uuid

import orjson

from loupe_catalog.results.rows import rows
from loupe_line import new_result_id
from loupe_shared.contracts.results import InspectionResult


def test_a_result_id_is_a_version_7_uuid_with_the_time_in_its_first_48_bits() -> None:
    before = time.time_ns() // 1_000_000
    made = new_result_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after


def test_ids_made_in_later_milliseconds_sort_after_earlier_ones() -> None:
    first = new_result_id()
    started = time.monotonic_ns()
    while time.monotonic_ns() - started < 2_000_000:  # the next ids are at least 1 ms later
        pass
    later = [new_result_id() for _ in range(100)]
    assert all(first < other for other in later)
    assert len({*later, first}) == 101  # random below the millisecond: never the same


def test_the_contract_and_the_ingest_decoder_read_it_back_unchanged() -> None:
    made = new_result_id()
    result = {
        "result_id": str(made),
        "line_id": "L1",
        "verdict": "pass",
        "captured_at": "2026-12-05T01:00:00Z",
    }
    assert InspectionResult.model_validate(result).result_id == made
    (row,) = rows(orjson.dumps({"results": [result]}))
    assert row[0] == made
