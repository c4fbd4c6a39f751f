"""Results through the gateway: the HTTP path, durable ingest, queries, stats, live feed."""

import asyncio
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from loupe_shared.contracts import subjects
from loupe_shared.kit.auth import Role
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings
from tests.catalog.helpers import publish
from tests.conftest import TokenMaker, auth
from tests.support import eventually


def result(line_id: str, verdict: str = "pass", **extra: Any) -> dict[str, Any]:
    return {
        "result_id": str(uuid.uuid4()),
        "line_id": line_id,
        "station": "s1",
        "part_id": f"part-{uuid.uuid4().hex[:6]}",
        "verdict": verdict,
        "score": 0.97,
        "defects": []
        if verdict == "pass"
        else [{"kind": "scratch", "bbox": {"x": 1, "y": 2, "width": 3, "height": 4}, "area": 12}],
        "processing_ms": 12.5,
        "captured_at": datetime.now(UTC).isoformat(),
        **extra,
    }


@pytest.fixture(scope="module")
def line(make_token: TokenMaker) -> dict[str, str]:
    return auth(make_token(Role.LINE, "results-line"))


@pytest.fixture(scope="module")
def viewer(make_token: TokenMaker) -> dict[str, str]:
    return auth(make_token(Role.VIEWER, "results-viewer"))


def _listed(gateway: httpx.Client, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    answer = gateway.get("/api/results", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


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
    eventually("ingested", lambda: len(_listed(gateway, viewer, line_id=line_id)) == 10)

    fails = _listed(gateway, viewer, line_id=line_id, verdict="fail")
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
    eventually("ingested", lambda: len(_listed(gateway, viewer, line_id=line_id)) == 1)


def test_a_malformed_message_is_set_aside_and_never_blocks_the_stream(
    gateway: httpx.Client, nats_settings: NatsSettings, line: dict[str, str], viewer: dict[str, str]
) -> None:
    line_id = f"line-{uuid.uuid4().hex[:8]}"
    publish(nats_settings, subjects.RESULTS_RECORDED, b'{"results": [{"verdict": "pass"}]}')
    publish(nats_settings, subjects.RESULTS_RECORDED, b"not json")
    good = result(line_id)
    publish(nats_settings, subjects.RESULTS_RECORDED, orjson.dumps({"results": [good]}))
    eventually("good one ingested", lambda: len(_listed(gateway, viewer, line_id=line_id)) == 1)

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
    received: list[dict[str, Any]] = []
    connected = threading.Event()

    def listen() -> None:
        with (
            httpx.Client(base_url=platform.gateway_url, timeout=30) as client,
            client.stream(
                "GET",
                "/api/results/stream",
                params={"line_id": line_id, "verdict": "fail"},
                headers=viewer,
            ) as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            event = ""
            for text in stream.iter_lines():
                if text == ": connected":
                    connected.set()
                if text.startswith("event: "):
                    event = text.removeprefix("event: ")
                if text.startswith("data: ") and event == "result":
                    received.append(orjson.loads(text.removeprefix("data: ")))
                    if len(received) == 2:
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert connected.wait(15)
    batch = [
        result(line_id, "fail"),
        result(line_id, "pass"),
        result("other-line", "fail"),
        result(line_id, "fail"),
    ]
    with httpx.Client(base_url=platform.gateway_url) as client:
        assert client.post("/api/results", json={"results": batch}, headers=line).status_code == 202
    listener.join(15)
    assert [r["result_id"] for r in received] == [batch[0]["result_id"], batch[3]["result_id"]]
