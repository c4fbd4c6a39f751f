"""Results through the gateway: the HTTP path, durable ingest, queries, stats, live feed."""

import asyncio
import threading
import uuid
from typing import Any

import httpx
import orjson
import pytest

from loupe_shared.contracts import subjects
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings
from tests.catalog.helpers import publish
from tests.monitoring.scraping import metric
from tests.results.helpers import LiveReader, listed, result
from tests.support import eventually


def test_http_batch_is_recorded_once_and_queryable(
    gateway: httpx.Client, line: dict[str, str], viewer: dict[str, str]
) -> None:
    line_id = f"line-{uuid.uuid4().hex[:8]}"
    batch = [result(line_id, "pass") for _ in range(6)] + [
        result(line_id, "fail", future_field={"x": 1}) for _ in range(4)
    ]
    sent = gateway.post("/api/results", json={"results": batch}, headers=line)
    assert sent.status_code == 202, sent.text
    assert sent.json()["accepted"] == 10
    # Sent again (a client retry): nothing is counted twice.
    assert gateway.post("/api/results", json={"results": batch}, headers=line).status_code == 202
    eventually("ingested", lambda: len(listed(gateway, viewer, line_id=line_id)) == 10)

    fails = listed(gateway, viewer, line_id=line_id, verdict="fail")
    assert len(fails) == 4
    assert all(item["future_field"] == {"x": 1} for item in fails)  # unknown fields kept
    assert fails[0]["defects"][0]["bbox"] == {"x": 1, "y": 2, "width": 3, "height": 4}

    one = gateway.get(f"/api/results/{batch[0]['result_id']}", headers=viewer)
    assert one.status_code == 200
    assert one.json()["part_id"] == batch[0]["part_id"]
    assert gateway.get(f"/api/results/{uuid.uuid4()}", headers=viewer).status_code == 404

    # Cursor pagination walks everything once, newest first.
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"line_id": line_id, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = gateway.get("/api/results", params=params, headers=viewer).json()
        seen += [item["result_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(r["result_id"] for r in batch)
    assert len(seen) == len(set(seen))

    stats = gateway.get(
        "/api/results/stats", params={"line_id": line_id, "bucket": "hour"}, headers=viewer
    ).json()
    total = sum(item["total"] for item in stats["items"])
    passed = sum(item["pass"] for item in stats["items"])
    assert (total, passed) == (10, 6)
    assert stats["items"][-1]["pass_rate"] is not None


def test_bad_results_are_refused_and_nothing_is_recorded(
    gateway: httpx.Client, line: dict[str, str], viewer: dict[str, str]
) -> None:
    line_id = f"line-{uuid.uuid4().hex[:8]}"
    bad_cases: list[Any] = [
        {"results": []},
        {"results": [result(line_id, "maybe")]},
        {"results": [result(line_id) | {"captured_at": "2026-01-01T00:00:00"}]},  # no zone
        {"results": [result(line_id) | {"result_id": "nope"}]},
        {"results": [result("bad line id!")]},
        {"results": [result(line_id) for _ in range(1001)]},
        {"results": [result(line_id) | {"capture_sha256": "abc"}]},
    ]
    for body in bad_cases:
        answer = gateway.post("/api/results", json=body, headers=line)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    assert gateway.post("/api/results", content=b"{", headers=line).status_code in (400, 422)
    assert (
        gateway.post(
            "/api/results", json={"results": [result(line_id)]}, headers=viewer
        ).status_code
        == 403
    )
    for params in (
        {"verdict": "maybe"},
        {"since": "2026-01-01T00:00:00"},
        {"cursor": "garbage"},
        {"limit": 0},
        {"line_id": "bad line"},
    ):
        assert gateway.get("/api/results", params=params, headers=viewer).status_code in (400, 422)
    assert (
        gateway.get("/api/results/stats", params={"bucket": "week"}, headers=viewer).status_code
        == 422
    )
    # The good result published after the bad ones arrives; none of the bad ones did.
    good = result(line_id)
    assert gateway.post("/api/results", json={"results": [good]}, headers=line).status_code == 202
    eventually("ingested", lambda: len(listed(gateway, viewer, line_id=line_id)) == 1)


def test_a_malformed_message_is_set_aside_and_never_blocks_the_stream(
    gateway: httpx.Client, nats_settings: NatsSettings, line: dict[str, str], viewer: dict[str, str]
) -> None:
    line_id = f"line-{uuid.uuid4().hex[:8]}"
    publish(nats_settings, subjects.RESULTS_RECORDED, b'{"results": [{"verdict": "pass"}]}')
    publish(nats_settings, subjects.RESULTS_RECORDED, b"not json")
    good = result(line_id)
    publish(nats_settings, subjects.RESULTS_RECORDED, orjson.dumps({"results": [good]}))
    eventually("good one ingested", lambda: len(listed(gateway, viewer, line_id=line_id)) == 1)

    async def dead() -> list[tuple[str, str]]:
        nc = await connect(nats_settings, "tests")
        try:
            sub = await nc.jetstream().pull_subscribe(
                f"{subjects.DEADLETTER}.results", stream="DEADLETTER"
            )
            found: list[tuple[str, str]] = []
            while True:  # every dead letter of the session's stream (other tests add theirs)
                try:
                    batch = await sub.fetch(500, timeout=1)
                except TimeoutError:
                    return found
                for m in batch:
                    found.append(
                        (m.data.decode(errors="replace"), (m.headers or {})["Loupe-Reason"])
                    )
        finally:
            await nc.close()

    set_aside = asyncio.run(dead())
    datas = [data for data, _ in set_aside]
    first = len(datas) - 1 - datas[::-1].index('{"results": [{"verdict": "pass"}]}')
    assert datas[first : first + 2] == ['{"results": [{"verdict": "pass"}]}', "not json"]
    assert all(reason for _, reason in set_aside)


def test_live_feed_streams_results_through_the_gateway(
    platform: Any, line: dict[str, str], viewer: dict[str, str]
) -> None:
    line_id = f"line-{uuid.uuid4().hex[:8]}"
    batch = [
        result(line_id, "fail"),
        result(line_id, "pass"),
        result("other-line", "fail"),
        result(line_id, "fail"),
    ]
    params = {"line_id": line_id, "verdict": "fail"}
    with (
        LiveReader(platform.gateway_url, viewer, params, count=2) as reader,
        httpx.Client(base_url=platform.gateway_url) as client,
    ):
        answer = client.post("/api/results", json={"results": batch}, headers=line)
        assert answer.status_code == 202
    assert reader.content_type.startswith("text/event-stream")
    assert [r["result_id"] for r in reader.received] == [
        batch[0]["result_id"],
        batch[3]["result_id"],
    ]


def test_a_reader_resuming_with_last_event_id_gets_what_it_missed_once(
    platform: Any, gateway: httpx.Client, line: dict[str, str], viewer: dict[str, str]
) -> None:
    line_id = f"resume-{uuid.uuid4().hex[:8]}"
    seen_then_missed = [result(line_id) for _ in range(3)]
    sent = gateway.post("/api/results", json={"results": seen_then_missed}, headers=line)
    assert sent.status_code == 202
    eventually("stored", lambda: len(listed(gateway, viewer, line_id=line_id)) == 3)
    live = [result(line_id) for _ in range(2)]
    resume = {**viewer, "Last-Event-ID": seen_then_missed[0]["result_id"]}
    with (
        LiveReader(platform.gateway_url, resume, {"line_id": line_id}, count=4) as reader,
        httpx.Client(base_url=platform.gateway_url) as client,
    ):
        answer = client.post("/api/results", json={"results": live}, headers=line)
        assert answer.status_code == 202
    assert [r["result_id"] for r in reader.received] == [
        r["result_id"] for r in [*seen_then_missed[1:], *live]
    ]


@pytest.mark.parametrize("last_event_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_an_unknown_last_event_id_just_goes_live(
    platform: Any, line: dict[str, str], viewer: dict[str, str], last_event_id: str
) -> None:
    line_id = f"resume-{uuid.uuid4().hex[:8]}"
    live = [result(line_id)]
    headers = {**viewer, "Last-Event-ID": last_event_id}
    with (
        LiveReader(platform.gateway_url, headers, {"line_id": line_id}, count=1) as reader,
        httpx.Client(base_url=platform.gateway_url) as client,
    ):
        assert client.post("/api/results", json={"results": live}, headers=line).status_code == 202
    assert [r["result_id"] for r in reader.received] == [live[0]["result_id"]]


def test_a_last_event_id_beyond_its_bound_is_a_422(
    gateway: httpx.Client, viewer: dict[str, str]
) -> None:
    answer = gateway.get("/api/results/stream", headers={**viewer, "Last-Event-ID": "x" * 101})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["field"] == "header:last-event-id"


WAITING = "results_readers_waiting"
HEARD = "results_stored_notices_total"


def _catalog_metric(platform: Any, admin_token: str, name: str, **labels: str) -> float:
    """A sample of the platform catalog's metrics."""
    return metric(platform.service_url("catalog"), admin_token, name, **labels)


def test_a_reader_waiting_for_new_results_is_answered_once_they_are_stored(
    platform: Any, admin_token: str, line: dict[str, str], viewer: dict[str, str]
) -> None:
    line_id = f"wait-{uuid.uuid4().hex[:8]}"
    batch = [result(line_id, "fail"), result(line_id, "pass")]
    answers: list[httpx.Response] = []

    def wait_for_them() -> None:
        # Longer than the test could take otherwise: answered by the store, not the deadline.
        with httpx.Client(base_url=platform.gateway_url, timeout=60) as client:
            answers.append(
                client.get(
                    "/api/results",
                    params={"line_id": line_id, "verdict": "fail", "wait": 30},
                    headers=viewer,
                )
            )

    before = _catalog_metric(platform, admin_token, WAITING)
    heard = _catalog_metric(platform, admin_token, HEARD)
    reader = threading.Thread(target=wait_for_them, daemon=True)
    reader.start()
    eventually(
        "the reader waits in the catalog",
        lambda: _catalog_metric(platform, admin_token, WAITING) > before,
    )
    assert not answers  # an empty first page waits
    with httpx.Client(base_url=platform.gateway_url) as client:
        sent = client.post("/api/results", json={"results": batch}, headers=line)
        assert sent.status_code == 202
    reader.join(25)
    assert not reader.is_alive(), "the waiting reader was not answered when results were stored"
    assert answers[0].status_code == 200, answers[0].text
    # What was stored and matches the filter, nothing else.
    assert [item["result_id"] for item in answers[0].json()["items"]] == [batch[0]["result_id"]]
    # Woken by the ingest's notice (without it the reader would look again after a second).
    assert _catalog_metric(platform, admin_token, HEARD) > heard
    # Timed apart from the route's other reads (its time is what it was asked to wait).
    waited = _catalog_metric(
        platform,
        admin_token,
        "http_request_duration_seconds_count",
        method="GET",
        route="/api/results (wait)",
    )
    assert waited >= 1


def test_a_wait_with_nothing_stored_answers_an_empty_page(
    gateway: httpx.Client, viewer: dict[str, str]
) -> None:
    answer = gateway.get(
        "/api/results",
        params={"line_id": f"wait-{uuid.uuid4().hex[:8]}", "wait": 0.2},
        headers=viewer,
    )
    assert answer.status_code == 200
    assert answer.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("wait", ["-1", "30.5", "nan", "inf", "-inf", "1e309", "soon", ""])
def test_a_wait_out_of_bounds_is_a_422(
    gateway: httpx.Client, viewer: dict[str, str], wait: str
) -> None:
    answer = gateway.get("/api/results", params={"wait": wait}, headers=viewer)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["field"] == "query:wait"


def test_a_wait_after_a_cursor_is_a_422(
    gateway: httpx.Client, line: dict[str, str], viewer: dict[str, str]
) -> None:
    line_id = f"wait-{uuid.uuid4().hex[:8]}"
    batch = [result(line_id) for _ in range(2)]
    assert gateway.post("/api/results", json={"results": batch}, headers=line).status_code == 202
    eventually("ingested", lambda: len(listed(gateway, viewer, line_id=line_id)) == 2)
    first = gateway.get("/api/results", params={"line_id": line_id, "limit": 1}, headers=viewer)
    cursor = first.json()["next_cursor"]
    assert cursor
    answer = gateway.get(
        "/api/results", params={"line_id": line_id, "cursor": cursor, "wait": 5}, headers=viewer
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "query:wait"


def test_a_waiting_reader_that_goes_away_stops_waiting(
    platform: Any, admin_token: str, viewer: dict[str, str]
) -> None:
    before = _catalog_metric(platform, admin_token, WAITING)
    gave_up: list[Exception] = []

    def give_up_after_three_seconds() -> None:
        with httpx.Client(base_url=platform.gateway_url, timeout=3.0) as client:
            try:
                client.get(
                    "/api/results",
                    params={"line_id": f"gone-{uuid.uuid4().hex[:8]}", "wait": 30},
                    headers=viewer,
                )
            except httpx.ReadTimeout as exc:
                gave_up.append(exc)

    reader = threading.Thread(target=give_up_after_three_seconds, daemon=True)
    reader.start()
    eventually("the reader waits", lambda: _catalog_metric(platform, admin_token, WAITING) > before)
    reader.join(15)
    assert gave_up, "the reader was answered before it gave up"
    # The gateway closed its connection to the catalog, which notices at its next look (every
    # second), not after the reader's 30 s.
    eventually(
        "the catalog stops waiting for a reader that left",
        lambda: _catalog_metric(platform, admin_token, WAITING) <= before,
    )
