"""The result contract's bounds (from the storage types) and the property they buy: anything
the API accepts is stored, and every read of it — single, list, stats, export, backup and
restore — answers 2xx. The ingest's hand-written fast path accepts exactly what the contract
accepts."""

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError

from loupe_catalog.results.rows import Malformed, rows
from loupe_shared.contracts import subjects
from loupe_shared.contracts.bounds import FLOAT_ABS_MAX, INT32_MAX, INT64_MAX, INT64_MIN
from loupe_shared.contracts.results import ResultBatch
from loupe_shared.kit.settings import NatsSettings
from tests.backup.conftest import Installation, backup
from tests.catalog.helpers import publish
from tests.conftest import auth
from tests.results.helpers import LiveReader
from tests.support import eventually

MakeInstallation = Callable[..., Installation]
NOW = "2026-06-01T12:00:00Z"


def _nested(depth: int, leaf: Any = None) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def _box(**values: int) -> dict[str, int]:
    return {"x": 0, "y": 0, "width": 0, "height": 0, **values}


def _result(line_id: str = "bounds-line", **fields: Any) -> dict[str, Any]:
    return {
        "result_id": str(uuid.uuid4()),
        "line_id": line_id,
        "verdict": "fail",
        "captured_at": NOW,
        **fields,
    }


def extreme_results(line_id: str) -> list[dict[str, Any]]:
    """Valid results at every bound the contract states."""
    defect = {
        "kind": "é" * 100,
        "bbox": _box(x=INT32_MAX, y=INT32_MAX, width=INT32_MAX, height=INT32_MAX),
        "area": FLOAT_ABS_MAX,
        "score": -FLOAT_ABS_MAX,
        "tool_id": "界" * 100,
        # A defect's unknown fields are bounded JSON of their own.
        "note": _nested(31, "deepest"),
    }
    return [
        _result(
            line_id,
            captured_at="1900-01-01T00:00:00Z",
            program_id=str(uuid.uuid4()),
            program_revision=INT32_MAX,
            schema_version=INT32_MAX,
            station="🔍" * 100,
            part_id="ü\u2028" * 100,
            score=FLOAT_ABS_MAX,
            processing_ms=FLOAT_ABS_MAX,
            defects=[defect],
            reason="r" * 2000,
            # The unknown fields are one JSON object: level 1; its values start at level 2.
            nested=_nested(31, "deepest"),
            integers=[INT64_MIN, INT64_MAX, 0],
            floats=[FLOAT_ABS_MAX, -FLOAT_ABS_MAX, 5e-324, 0.1],
            text="\uffff\U0010ffff",
        ),
        _result(
            line_id,
            # The same instant as 1900-01-01T00:00Z: the window is checked in UTC.
            captured_at="1900-01-01T05:30:00+05:30",
            program_revision=1,
            score=0.0,
            processing_ms=0.0,
            defects=[{"bbox": _box(), "area": 0.0}],
        ),
        _result(line_id, captured_at="2199-12-31T23:59:59.999999Z", verdict="pass"),
        # 2200-01-01 in its own zone, 2199-12-31T23:00Z in UTC: inside the window.
        _result(line_id, captured_at="2200-01-01T01:00:00+02:00", verdict="error", reason=""),
    ]


def hostile_results() -> list[tuple[str, dict[str, Any] | str, str]]:
    """(case, a result or raw JSON of one, the field a 422 names)."""
    surrogate = json.dumps(_result())[:-1] + ', "station": "\\ud800"}'
    big_int = json.dumps(_result())[:-1] + ', "future": 1' + "0" * 30 + "}"
    return [
        ("revision-beyond-int32", _result(program_revision=INT32_MAX + 1), "program_revision"),
        ("revision-beyond-int64", _result(program_revision=2**70), "program_revision"),
        ("revision-zero", _result(program_revision=0), "program_revision"),
        ("schema-version-beyond-int32", _result(schema_version=2**31), "schema_version"),
        ("captured-year-9999", _result(captured_at="9999-12-31T23:59:59-14:00"), "captured_at"),
        ("captured-year-1", _result(captured_at="0001-01-01T00:00:00+14:00"), "captured_at"),
        ("captured-1899", _result(captured_at="1899-12-31T23:59:59Z"), "captured_at"),
        ("captured-2200", _result(captured_at="2200-01-01T00:00:00Z"), "captured_at"),
        (
            "captured-2200-by-offset",
            _result(captured_at="2199-12-31T23:00:00-01:00"),
            "captured_at",
        ),
        ("captured-naive", _result(captured_at="2026-01-01T00:00:00"), "captured_at"),
        ("area-1e20", _result(defects=[{"bbox": _box(), "area": 1e20}]), "defects.0.area"),
        ("area-negative", _result(defects=[{"bbox": _box(), "area": -1.0}]), "defects.0.area"),
        (
            "box-beyond-int32",
            _result(defects=[{"bbox": _box(x=2**31), "area": 1}]),
            "defects.0.bbox.x",
        ),
        (
            "box-negative",
            _result(defects=[{"bbox": _box(height=-1), "area": 1}]),
            "defects.0.bbox.height",
        ),
        ("score-1e16", _result(score=1e16), "score"),
        ("processing-negative", _result(processing_ms=-0.5), "processing_ms"),
        ("station-nul", _result(station="a\x00"), "station"),
        ("part-nul", _result(part_id="\x00"), "part_id"),
        ("reason-nul", _result(reason="\x00"), "reason"),
        (
            "kind-nul",
            _result(defects=[{"kind": "\x00", "bbox": _box(), "area": 1}]),
            "defects.0.kind",
        ),
        (
            "tool-id-nul",
            _result(defects=[{"tool_id": "\x00", "bbox": _box(), "area": 1}]),
            "defects.0.tool_id",
        ),
        ("station-too-long", _result(station="s" * 101), "station"),
        ("station-surrogate", surrogate, "station"),
        ("unknown-field-33-deep", _result(future=_nested(32)), ""),
        ("unknown-field-300-deep", _result(future=_nested(300)), ""),
        ("unknown-field-nul", _result(future={"a": "\x00"}), ""),
        ("unknown-field-nul-key", _result(future={"\x00": 1}), ""),
        ("unknown-field-beyond-64-bits", big_int, ""),
        ("unknown-field-1e20", _result(future=[1e20]), ""),
        (
            "defect-unknown-field-nul",
            _result(defects=[{"bbox": _box(), "area": 1, "n": "\x00"}]),
            "defects.0",
        ),
        (
            "box-unknown-field-deep",
            _result(defects=[{"bbox": {**_box(), "n": _nested(40)}, "area": 1}]),
            "defects.0.bbox",
        ),
    ]


def _batch(result: dict[str, Any] | str) -> bytes:
    text = result if isinstance(result, str) else json.dumps(result)
    return ('{"results": [' + text + "]}").encode()


def _contract_accepts(data: bytes) -> bool:
    try:
        ResultBatch.model_validate_json(data)
    except ValidationError:
        return False
    return True


def _fast_path_accepts(data: bytes) -> bool:
    try:
        rows(data)
    except Malformed:
        return False
    return True


PARITY = [(f"extreme-{i}", r) for i, r in enumerate(extreme_results("l"))] + [
    (case, r) for case, r, _ in hostile_results()
]


@pytest.mark.parametrize("result", [r for _, r in PARITY], ids=[c for c, _ in PARITY])
def test_the_ingest_fast_path_accepts_exactly_what_the_contract_accepts(
    result: dict[str, Any] | str,
) -> None:
    data = _batch(result)
    assert _fast_path_accepts(data) == _contract_accepts(data)


def test_the_fast_path_stores_timestamps_in_utc_and_the_unknown_fields_as_sent() -> None:
    extreme = extreme_results("l")
    stored = rows(orjson.dumps({"results": extreme}))
    assert [row[1].isoformat() for row in stored] == [
        "1900-01-01T00:00:00+00:00",
        "1900-01-01T00:00:00+00:00",
        "2199-12-31T23:59:59.999999+00:00",
        "2199-12-31T23:00:00+00:00",
    ]
    extra = orjson.loads(stored[0][-2])
    assert extra["nested"] == _nested(31, "deepest")
    assert extra["integers"] == [INT64_MIN, INT64_MAX, 0]


@pytest.fixture(scope="module")
def admin(admin_token: str) -> dict[str, str]:
    return auth(admin_token)


HOSTILE = hostile_results()


@pytest.mark.parametrize(("result", "field"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_results_are_a_422_naming_the_field(
    gateway: httpx.Client, admin: dict[str, str], result: dict[str, Any] | str, field: str
) -> None:
    answer = gateway.post(
        "/api/results",
        content=_batch(result),
        headers={**admin, "Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    named = ("body:results.0." + field).rstrip(".")
    assert answer.json()["errors"][0]["field"] == named, answer.json()


def test_hostile_results_are_never_stored(gateway: httpx.Client, admin: dict[str, str]) -> None:
    ids = []
    for _, result, _ in HOSTILE:
        answer = gateway.post(
            "/api/results",
            content=_batch(result),
            headers={**admin, "Content-Type": "application/json"},
        )
        assert answer.status_code == 422, answer.text
        ids.append((json.loads(result) if isinstance(result, str) else result)["result_id"])
    # Nothing was published: a result sent after them is stored, and none of them is.
    after = _result(f"after-{uuid.uuid4().hex[:8]}")
    sent = gateway.post("/api/results", json={"results": [after]}, headers=admin)
    assert sent.status_code == 202, sent.text
    eventually(
        "the later result stored",
        lambda: gateway.get(f"/api/results/{after['result_id']}", headers=admin).status_code == 200,
        timeout_s=20,
    )
    for result_id in ids:
        assert gateway.get(f"/api/results/{result_id}", headers=admin).status_code == 404


def _reads_answer(
    client: httpx.Client, admin: dict[str, str], sent: list[dict[str, Any]], line_id: str
) -> None:
    """Every read of the results answers 2xx and gives them back as they were sent."""
    for result in sent:
        one = client.get(f"/api/results/{result['result_id']}", headers=admin)
        assert one.status_code == 200, one.text
        got = one.json()
        for key in ("program_revision", "station", "part_id", "score", "reason", "nested"):
            if key in result:
                assert got[key] == result[key], key
        for key in ("integers", "floats", "text", "schema_version", "processing_ms"):
            if key in result:
                assert got[key] == result[key], key
        for sent_defect, got_defect in zip(result.get("defects", []), got["defects"], strict=True):
            assert {k: got_defect[k] for k in sent_defect} == sent_defect
    listed = client.get("/api/results", params={"line_id": line_id, "limit": 1000}, headers=admin)
    assert listed.status_code == 200, listed.text
    assert {r["result_id"] for r in listed.json()["items"]} >= {r["result_id"] for r in sent}
    windows = [
        ("day", "1900-01-01T00:00:00Z", "1900-01-02T00:00:00+00:00", 2),
        ("hour", "2199-12-31T22:00:00Z", "2199-12-31T23:59:59.999999Z", 1),
    ]
    for bucket, since, until, total in windows:
        params = {"bucket": bucket, "since": since, "until": until, "line_id": line_id}
        stats = client.get("/api/results/stats", params=params, headers=admin)
        assert stats.status_code == 200, stats.text
        assert sum(item["total"] for item in stats.json()["items"]) == total
        page = client.get(
            "/api/results",
            params={"since": since, "until": until, "line_id": line_id, "limit": 1},
            headers=admin,
        )
        assert page.status_code == 200, page.text
        cursor = page.json()["next_cursor"]
        if cursor:  # the cursor of a page at the window's edge is taken back
            following = client.get(
                "/api/results",
                params={"since": since, "until": until, "line_id": line_id, "cursor": cursor},
                headers=admin,
            )
            assert following.status_code == 200, following.text


def test_values_at_the_bounds_are_stored_and_every_read_answers(
    gateway: httpx.Client, admin: dict[str, str]
) -> None:
    line_id = f"bounds-{uuid.uuid4().hex[:8]}"
    sent = extreme_results(line_id)
    answer = gateway.post("/api/results", json={"results": sent}, headers=admin)
    assert answer.status_code == 202, answer.text
    eventually(
        "the results stored",
        lambda: all(
            gateway.get(f"/api/results/{r['result_id']}", headers=admin).status_code == 200
            for r in sent
        ),
        timeout_s=20,
    )
    _reads_answer(gateway, admin, sent, line_id)
    exported = gateway.get("/api/exports", params={"images": "false", "logs": 0}, headers=admin)
    assert exported.status_code == 200, exported.text


# Written straight into the database, as an installation from before the bounds may hold it:
# jsonb gives `1e20` back as an integer no 64-bit reader takes, and nothing bounded the depth.
LEGACY_ROW = (
    "INSERT INTO results (result_id, captured_at, line_id, verdict, defects, defect_count, "
    "extra) VALUES ('{id}', '2026-06-01T00:00:00Z', '{line}', 'fail', "
    """'[{{"area": 1e20, "bbox": {{"x": 0, "y": 0, "width": 0, "height": 0}}}}]', 1, """
    """'{{"huge": 1e30, "deep": {deep}}}')"""
)


def test_stored_values_from_before_the_bounds_and_a_backup_restore_read_back(
    make_installation: MakeInstallation,
) -> None:
    source = make_installation()
    source.start("catalog")
    source.start("backup")
    line_id = f"bounds-{uuid.uuid4().hex[:8]}"
    sent = extreme_results(line_id)
    legacy_id = str(uuid.uuid4())
    with source.client("catalog") as catalog:
        answer = catalog.post("/api/results", json={"results": sent}, headers=source.admin)
        assert answer.status_code == 202, answer.text
        source.sql(LEGACY_ROW.format(id=legacy_id, line=line_id, deep=json.dumps(_nested(300, 1))))
        eventually(
            "the results stored",
            lambda: source.sql("SELECT count(*) FROM results")[0][0] == len(sent) + 1,
            timeout_s=20,
        )
        _reads_answer(catalog, source.admin, sent, line_id)
        legacy = catalog.get(f"/api/results/{legacy_id}", headers=source.admin)
        assert legacy.status_code == 200, legacy.text
        assert legacy.json()["defects"][0]["area"] == 1e20
        assert legacy.json()["huge"] == 1e30
    with source.client("backup") as client:
        exported = client.get("/api/exports", params={"images": "false"}, headers=source.admin)
        assert exported.status_code == 200, exported.text
        results = {r["id"]: r for r in exported.json()["data"]["results"]}
        assert results[legacy_id]["defects"][0]["area"] == 1e20
        assert {r["result_id"] for r in sent} <= results.keys()

    done = backup(source)
    assert done["status"] == "completed", done
    target = make_installation(backup_bucket=source.backup_bucket)
    target.start("backup")
    with target.client("backup") as client:
        started = client.post(
            f"/api/backups/{done['id']}/restore",
            json={"dry_run": False, "mode": "empty"},
            headers=target.admin,
        )
        assert started.status_code == 202, started.text
        restore_id = started.json()["id"]
        state: dict[str, Any] = {}

        def finished() -> bool:
            state.update(
                client.get(
                    f"/api/backups/{done['id']}/restores/{restore_id}", headers=target.admin
                ).json()
            )
            return bool(state["status"] != "running")

        eventually("the restore finished", finished, timeout_s=60)
    assert state["status"] == "completed", state
    target.start("catalog")
    with target.client("catalog") as catalog:
        _reads_answer(catalog, target.admin, sent, line_id)
        assert catalog.get(f"/api/results/{legacy_id}", headers=target.admin).status_code == 200


def test_the_live_feed_skips_results_beyond_the_bounds_and_goes_on(
    platform: Any, nats_settings: NatsSettings, admin: dict[str, str]
) -> None:
    line_id = f"live-{uuid.uuid4().hex[:8]}"
    good = [_result(line_id), _result(line_id)]
    # Published straight into the stream, as a line bypassing the API could: nested deeper
    # than orjson writes, and with values the database would refuse.
    poison = [
        _result(line_id, future=_nested(300)),
        _result(line_id, program_revision=2**40),
        _result(line_id, station="\x00"),
    ]
    subject = subjects.RESULTS_RECORDED
    params = {"line_id": line_id}
    with LiveReader(platform.gateway_url, admin, params, count=2) as reader:
        body = json.dumps({"results": [poison[0], good[0], *poison[1:]]}).encode()
        publish(nats_settings, subject, body)
        publish(nats_settings, subject, orjson.dumps({"results": [good[1]]}))
    assert [r["result_id"] for r in reader.received] == [r["result_id"] for r in good]
