"""Inspection requests through the gateway while the worker process taking some of them is
killed: every request is answered exactly once (one result, the right verdict), the ones in
the dead worker's hands by the other worker."""

import asyncio
import time
import uuid
from typing import Any

import httpx

from loupe_stack.stack import Stack
from tests.conftest import auth
from tests.inspect import synthetic
from tests.support import eventually

REQUESTS = 40


def _upload(client: httpx.Client, token: str, data: bytes, kind: str) -> str:
    answer = client.post(
        "/api/images",
        params={"kind": kind},
        content=data,
        headers={**auth(token), "Content-Type": "image/png"},
    )
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["sha256"])


def _program(client: httpx.Client, token: str) -> dict[str, Any]:
    good = synthetic.make_case(0, bad=False)
    bad = synthetic.make_case(0, bad=True)
    master = _upload(client, token, synthetic.encode_png(good.master), "master")
    created = client.post(
        "/api/programs",
        json={
            "name": f"Cluster {uuid.uuid4().hex[:8]}",
            "config": synthetic.program_config(good.roi),
            "master_image_sha256": master,
        },
        headers=auth(token),
    )
    assert created.status_code == 201, created.text
    return {
        "id": created.json()["id"],
        "good": _upload(client, token, synthetic.encode_png(good.capture), "capture"),
        "bad": _upload(client, token, synthetic.encode_png(bad.capture), "capture"),
    }


async def _rows(stack: Stack, ids: list[str]) -> dict[str, list[str]]:
    conn = await stack.endpoints.pg_connect()
    try:
        rows = await conn.fetch(
            "SELECT result_id::text AS id, verdict FROM results WHERE result_id = ANY($1::uuid[])",
            ids,
        )
    finally:
        await conn.close()
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row["id"], []).append(row["verdict"])
    return found


def test_inspections_through_a_killed_worker_are_each_answered_once(cluster: Stack) -> None:
    token = cluster.admin_token
    with httpx.Client(base_url=cluster.gateway_url, timeout=60) as client:
        program = _program(client, token)
        expected: dict[str, str] = {}
        retried = 0

        def ask(n: int) -> None:
            nonlocal retried
            capture = program["good"] if n % 2 == 0 else program["bad"]
            body = {
                "program_id": program["id"],
                "capture_sha256": capture,
                "line_id": "cluster-1",
                "request_id": str(uuid.uuid4()),
            }
            for _ in range(20):  # a client's retries: the request id makes them one request
                try:
                    answer = client.post("/api/inspections", json=body, headers=auth(token))
                except httpx.TransportError:
                    retried += 1
                    continue
                if answer.status_code in (502, 503, 504):
                    retried += 1
                    continue
                assert answer.status_code == 202, answer.text
                expected[answer.json()["result_id"]] = "pass" if n % 2 == 0 else "fail"
                return
            raise AssertionError(f"request {n} never queued")

        # Every request queued first: when the worker dies it holds some of them.
        for n in range(REQUESTS):
            ask(n)
        found: dict[str, list[str]] = {}

        def some_answered() -> bool:
            found.update(asyncio.run(_rows(cluster, list(expected))))
            return len(found) >= 3

        eventually("first results stored", some_answered, timeout_s=120)
        answered_before = len(found)
        victim = cluster.replicas["inspect"][0]
        cluster.kill(victim)
        killed_at = time.monotonic()

        def all_answered() -> bool:
            found.clear()
            found.update(asyncio.run(_rows(cluster, list(expected))))
            return len(found) == REQUESTS

        eventually(f"{REQUESTS} results", all_answered, timeout_s=240)
        recovered_s = time.monotonic() - killed_at
        cluster.revive(victim)
        cluster.wait_service_ready("inspect", 1)

    print(
        f"\ncluster inspections: {REQUESTS} requests, {answered_before} answered when a worker "
        f"was killed, {len(found)} answered in the end, "
        f"{sum(len(v) for v in found.values())} results, {retried} asks retried; all answered "
        f"{recovered_s:.1f} s after a worker was killed"
    )
    assert set(found) == set(expected)
    assert all(len(verdicts) == 1 for verdicts in found.values()), found
    assert {rid: verdicts[0] for rid, verdicts in found.items()} == expected
