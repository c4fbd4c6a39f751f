"""Inspection workers as real processes against the real servers: a consumer group handles
each request once, results carry the revision and flow into the catalog's ingest, and poison
messages end as `error` results or dead letters without stalling the consumer."""

import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from loupe_shared.kit.auth import Role
from loupe_stack.processes import free_port
from tests.conftest import auth
from tests.inspect import synthetic
from tests.inspect.conftest import Rig, Workers
from tests.support import eventually

pytestmark = pytest.mark.slow


def results_for(
    rig: Rig, namespace: str, count: int, timeout_s: float = 60
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        found[:] = rig.results(namespace)
        return len(found) >= count

    eventually(f"{count} results", enough, timeout_s=timeout_s)
    return found


def test_three_workers_share_the_requests_and_handle_each_once(
    rig: Rig, workers: Workers, suite_program: dict[str, Any]
) -> None:
    workers.start(3, INSPECT_CONCURRENCY="1")
    p = suite_program
    requests = [
        rig.request(p["program_id"], p["good"] if i % 2 == 0 else p["bad"], program_revision=1)
        for i in range(24)
    ]
    rig.publish_requests(workers.namespace, requests)

    results = results_for(rig, workers.namespace, len(requests))
    by_request = Counter(r["request_id"] for r in results)
    assert set(by_request) == {r["request_id"] for r in requests}
    assert set(by_request.values()) == {1}
    # Handled once, not published twice and deduplicated: the workers' own counts add up.
    handled = [workers.metric("inspect_results_total", i) for i in range(3)]
    assert sum(handled) == len(requests)
    assert sum(1 for count in handled if count > 0) >= 2, handled
    assert len({r["inspected_by"] for r in results}) >= 2

    expected = {
        r["request_id"]: ("pass" if r["capture_sha256"] == p["good"] else "fail") for r in requests
    }
    for result in results:
        assert result["verdict"] == expected[result["request_id"]], result
        assert result["program_revision"] == p["revision"]
        assert result["program_id"] == p["program_id"]
        assert result["processing_ms"] > 0
        assert result["line_id"] == "line-7"
        assert {t["tool_id"] for t in result["tools"]} == {"surface", "exposure"}
        assert result["alignment"]["method"] == "ecc"
        if result["verdict"] == "fail":
            boxes = [
                (d["bbox"]["x"], d["bbox"]["y"], d["bbox"]["width"], d["bbox"]["height"])
                for d in result["defects"]
            ]
            assert all(synthetic.found(truth, boxes) for truth in p["bad_defects"])
            assert all(d["tool_id"] == "surface" for d in result["defects"])


def test_results_of_the_current_revision_reach_the_catalog(
    rig: Rig, suite_program: dict[str, Any], tmp_path: Path
) -> None:
    # Workers in the catalog's own namespace, registering a token of their own.
    workers = Workers(rig, rig.namespace, tmp_path)
    try:
        workers.start(1, INSPECT_CATALOG_TOKEN="")
        p = suite_program
        request = rig.request(p["program_id"], p["good"])  # no revision: the current one
        rig.publish_requests(rig.namespace, [request])
        viewer = rig.engineer

        def stored() -> bool:
            answer = httpx.get(
                f"{rig.catalog_url}/api/results",
                params={"program_id": p["program_id"], "line_id": "line-7"},
                headers=viewer,
            )
            return any(item.get("part_id") == request["part_id"] for item in answer.json()["items"])

        eventually("the result in the catalog", stored, timeout_s=60)
        answer = httpx.get(
            f"{rig.catalog_url}/api/results",
            params={"program_id": p["program_id"], "line_id": "line-7"},
            headers=viewer,
        ).json()
        [item] = [i for i in answer["items"] if i.get("part_id") == request["part_id"]]
        assert item["verdict"] == "pass"
        assert item["program_revision"] == p["revision"]
        assert item["capture_sha256"] == p["good"]
    finally:
        workers.stop()


def test_poison_messages_end_as_errors_or_dead_letters_and_never_stall(
    rig: Rig, workers: Workers, suite_program: dict[str, Any]
) -> None:
    workers.start(1)
    p = suite_program
    junk = rig.put_raw_blob(b"this is not an image " + uuid.uuid4().bytes)
    unstored = "0" * 63 + "1"
    cases = {
        "no such program": rig.request(str(uuid.uuid4()), p["good"]),
        "no such revision": rig.request(p["program_id"], p["good"], program_revision=99),
        "capture not stored": rig.request(p["program_id"], unstored),
        "undecodable capture": rig.request(p["program_id"], junk),
    }
    nested: Any = "leaf"
    for _ in range(500):
        nested = {"n": nested}
    # Straight into the stream, past every check a client would make.
    raw = [
        b"{not json",
        b'{"request_id": "nope"}',
        json.dumps(rig.request(p["program_id"], p["good"], program_revision=2**31)).encode(),
        json.dumps(
            rig.request(p["program_id"], p["good"], captured_at="0001-01-01T00:00:00+05:00")
        ).encode(),
        json.dumps(rig.request(p["program_id"], p["good"], station="s\x001")).encode(),
        json.dumps(rig.request(p["program_id"], p["good"], vendor=nested)).encode(),
    ]
    started = time.monotonic()
    for body in raw:
        rig.publish_raw(workers.namespace, body)
    rig.publish_requests(workers.namespace, list(cases.values()))
    last = rig.request(p["program_id"], p["good"])
    rig.publish_requests(workers.namespace, [last])

    results = {r["request_id"]: r for r in results_for(rig, workers.namespace, len(cases) + 1)}
    print(
        f"inspection poison published → the request after it answered: "
        f"{time.monotonic() - started:.2f} s"
    )
    assert results[last["request_id"]]["verdict"] == "pass"
    reasons = {
        "no such program": "does not exist",
        "no such revision": "revision 99",
        "capture not stored": "is not stored",
        "undecodable capture": "cannot be decoded",
    }
    for name, request in cases.items():
        result = results[request["request_id"]]
        assert result["verdict"] == "error", name
        assert reasons[name] in result["reason"], (name, result["reason"])
        assert result["defects"] == []
    dead = rig.dead_letters(workers.namespace)
    assert sorted(body for _, body in dead) == sorted(raw)
    assert all("not an inspection request" in headers["Loupe-Reason"] for headers, _ in dead)
    assert workers.metric(
        'consumer_dead_lettered_total{consumer="inspect-workers",reason="malformed"}', 0
    ) == len(raw)


def test_a_request_failing_for_a_passing_reason_is_retried_then_dead_lettered(
    rig: Rig, workers: Workers, suite_program: dict[str, Any]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    workers.start(
        1, INSPECT_CATALOG_URL=closed, INSPECT_MAX_DELIVERIES="3", INSPECT_PRELOAD="false"
    )
    request = rig.request(suite_program["program_id"], suite_program["good"])
    rig.publish_requests(workers.namespace, [request])

    [result] = results_for(rig, workers.namespace, 1)
    assert result["request_id"] == request["request_id"]
    assert result["verdict"] == "error"
    assert "gave up after 3 attempts" in result["reason"]
    assert "catalog cannot be reached" in result["reason"]
    [(headers, body)] = rig.dead_letters(workers.namespace)
    assert uuid.UUID(request["request_id"]).hex in body.decode().replace("-", "")
    assert "gave up after 3 attempts" in headers["Loupe-Reason"]
    assert workers.metric("inspect_retries_total", 0) == 2
    assert workers.metric('consumer_dead_lettered_total{consumer="inspect-workers"', 0) == 1


def test_a_slow_request_is_bounded_by_the_time_limit(
    rig: Rig, workers: Workers, suite_program: dict[str, Any]
) -> None:
    workers.start(1, INSPECT_TIME_LIMIT_S="0.001", INSPECT_PRELOAD="false")
    request = rig.request(suite_program["program_id"], suite_program["good"])
    rig.publish_requests(workers.namespace, [request])
    [result] = results_for(rig, workers.namespace, 1)
    assert result["verdict"] == "error"
    assert "took longer than 0.001 s" in result["reason"]


def test_metrics_need_a_token(rig: Rig, workers: Workers) -> None:
    workers.start(1)
    url = f"http://127.0.0.1:{workers.ports[0]}"
    assert httpx.get(f"{url}/metrics").status_code == 401
    answer = httpx.get(f"{url}/readyz")
    assert answer.status_code == 200
    assert answer.json()["checks"]["consumer"]["ok"] is True
    assert (
        httpx.get(f"{url}/api/services/inspect", headers=auth(rig.admin_token)).status_code == 200
    )


def test_masters_of_active_programs_are_preloaded(
    rig: Rig, workers: Workers, suite_program: dict[str, Any]
) -> None:
    workers.start(1)
    eventually(
        "the master preloaded",
        lambda: workers.metric("inspect_master_cache_bytes", 0) > 0,
        timeout_s=30,
    )
    assert workers.metric("inspect_results_total", 0) == 0


def test_an_overlay_of_the_defects_is_stored_through_the_images_service(
    rig: Rig, workers: Workers, suite_program: dict[str, Any]
) -> None:
    workers.start(1)
    p = suite_program
    wanted = rig.request(p["program_id"], p["bad"], overlay=True)
    plain = rig.request(p["program_id"], p["bad"])
    rig.publish_requests(workers.namespace, [wanted, plain])
    results = {r["request_id"]: r for r in results_for(rig, workers.namespace, 2)}
    assert "overlay_sha256" not in results[plain["request_id"]]
    result = results[wanted["request_id"]]
    assert result["verdict"] == "fail"
    answer = httpx.get(
        f"{rig.images_url}/api/images/{result['overlay_sha256']}", headers=rig.engineer
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/jpeg"
    drawn = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
    assert drawn is not None
    b, g, r = (drawn[..., i].astype(int) for i in range(3))
    # Red boxes over a grey capture: one per defect, where the defect is.
    red = (r > 180) & (g < 100) & (b < 100)
    assert red.sum() > 100
    first = result["defects"][0]["bbox"]
    ys, xs = np.nonzero(red)
    assert xs.min() <= first["x"] + first["width"] + 30
    assert ys.min() <= first["y"] + first["height"] + 30


def test_the_frontend_queues_and_tries_inspections_over_http(
    rig: Rig, workers: Workers, suite_program: dict[str, Any]
) -> None:
    workers.start(1)
    p = suite_program
    url = f"http://127.0.0.1:{workers.ports[0]}/api/inspections"
    ask = {"program_id": p["program_id"], "capture_sha256": p["bad"], "part_id": "f-1"}
    with httpx.Client(headers=workers.token(Role.ENGINEER), timeout=60) as client:
        queued = client.post(url, json=ask)
        assert queued.status_code == 202, queued.text
        for bad in (
            {**ask, "capture_sha256": "xyz"},
            {**ask, "program_revision": 0},
            {**ask, "surprise": True},
            {"capture_sha256": p["bad"]},
        ):
            refused = client.post(url, json=bad)
            assert refused.status_code == 422, bad
            assert refused.headers["content-type"].startswith("application/problem+json")
        viewer = workers.token(Role.VIEWER)
        assert client.post(url, json=ask, headers=viewer).status_code == 403
        second = client.post(url, json={**ask, "capture_sha256": p["good"]})
        assert second.status_code == 202

        tried = client.post(f"{url}/try", json={**ask, "capture_sha256": p["good"]})
        assert tried.status_code == 200, tried.text
        assert tried.json()["verdict"] == "pass"
        assert tried.json()["is_simulated"] is True
        missing = client.post(f"{url}/try", json={**ask, "program_id": str(uuid.uuid4())})
        assert missing.status_code == 422
        assert "does not exist" in missing.json()["detail"]

    results = results_for(rig, workers.namespace, 2)
    assert {r["result_id"] for r in results} == {
        queued.json()["result_id"],
        second.json()["result_id"],
    }
    assert {r["verdict"] for r in results} == {"pass", "fail"}
    assert rig.dead_letters(workers.namespace) == []


@pytest.mark.e2e
def test_the_gateway_routes_inspections_to_the_workers(
    gateway: httpx.Client, admin_token: str
) -> None:
    assert gateway.post("/api/inspections", json={}).status_code == 401
    answer = gateway.post(
        "/api/inspections/try",
        json={"program_id": "not-a-uuid", "capture_sha256": "ab"},
        headers=auth(admin_token),
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    fields = json.dumps(answer.json())
    assert "program_id" in fields
    assert "capture_sha256" in fields
