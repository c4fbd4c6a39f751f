"""The outbox relay's lag: from a change committed to its event on NATS.

Two cases on the same catalog, in alternating rounds:
- *woken at commit*: a program revised through the catalog's API (`PUT`, straight to the
  service); its session wrote an outbox row, and the commit wakes the relay
  (`OutboxRelay.wake_after_commit`). Timed from the request sent to the event received.
- *found by polling* (the relay as it was before the wake): the same event row inserted and
  committed by a plain connection, which wakes nothing; the relay finds it at its next poll,
  up to `CATALOG_OUTBOX_IDLE_S` (0.25 s) later. Timed from the commit to the event received.
The woken case's time includes the whole request; the other's only the commit: the
difference is what the wake removes, at least."""

import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import httpx
from tests.catalog.helpers import new_program

from loupe_shared.contracts import subjects
from loupe_shared.kit.nats import connect
from loupe_stack.stack import Stack

ROUNDS = 4
PER_ROUND = 50


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _measure(stack: Stack) -> dict[str, list[float]]:
    nc = await connect(stack.endpoints.nats(), "bench-outbox")
    seen: dict[str, float] = {}
    waiting: dict[str, asyncio.Future[float]] = {}

    async def on_event(msg: Any) -> None:
        at = time.perf_counter()
        event_id = str(json.loads(msg.data).get("event_id"))
        seen[event_id] = at
        future = waiting.pop(event_id, None)
        if future is not None and not future.done():
            future.set_result(at)

    async def arrival(event_id: str) -> float:
        """When the event arrived (it may have, before the caller knew its id)."""
        if event_id in seen:
            return seen[event_id]
        future = waiting[event_id] = asyncio.get_running_loop().create_future()
        return await asyncio.wait_for(future, 10)

    topic = subjects.subject(subjects.PROGRAMS_REVISED, stack.endpoints.nats().namespace)
    await nc.subscribe(topic, cb=on_event)
    pg = await stack.endpoints.pg_connect()
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    samples: dict[str, list[float]] = {"woken at commit": [], "found by polling": []}
    try:
        async with httpx.AsyncClient(base_url=stack.service_url("catalog"), timeout=30) as http:
            created = await http.post("/api/programs", json=new_program(), headers=headers)
            created.raise_for_status()
            program = created.json()
            etag = created.headers["etag"]
            template = await pg.fetchrow(
                "SELECT subject, payload::text AS payload FROM outbox ORDER BY id DESC LIMIT 1"
            )
            assert template is not None
            assert template["subject"] == subjects.PROGRAMS_REVISED

            async def woken(i: int) -> float:
                nonlocal etag
                body = {
                    "name": program["name"],
                    "config": program["config"],
                    "description": f"bench {i}",
                }
                started = time.perf_counter()
                answer = await http.put(
                    f"/api/programs/{program['id']}",
                    json=body,
                    headers={**headers, "If-Match": etag},
                )
                answer.raise_for_status()
                etag = answer.headers["etag"]
                row = await pg.fetchrow(
                    "SELECT event_id FROM outbox WHERE subject = $1 ORDER BY id DESC LIMIT 1",
                    subjects.PROGRAMS_REVISED,
                )
                assert row is not None
                return await arrival(str(row["event_id"])) - started

            async def polled(i: int) -> float:
                event_id = str(uuid.uuid4())
                payload = json.loads(template["payload"])
                payload["event_id"] = event_id
                await pg.execute(
                    "INSERT INTO outbox (event_id, subject, payload, created_at, attempts)"
                    " VALUES ($1, $2, $3::jsonb, now(), 0)",
                    event_id,
                    template["subject"],
                    json.dumps(payload),
                )
                committed = time.perf_counter()  # autocommit: the INSERT has committed
                return await arrival(event_id) - committed

            for _ in range(ROUNDS):
                for case, one in (("woken at commit", woken), ("found by polling", polled)):
                    for i in range(PER_ROUND):
                        samples[case].append(await one(i))
                        await asyncio.sleep(0.01)  # the relay idle again, as between edits
    finally:
        await pg.close()
        await nc.drain()
    return samples


def bench_outbox(stack: Stack) -> list[dict[str, Any]]:
    samples = asyncio.run(_measure(stack))
    rows: list[dict[str, Any]] = []
    for case, taken in samples.items():
        rows.append(
            {
                "bench": "outbox relay lag",
                "case": case,
                "events": len(taken),
                "p50_ms": round(statistics.median(taken) * 1000, 2),
                "p99_ms": round(_quantile(taken, 0.99) * 1000, 2),
                "max_ms": round(max(taken) * 1000, 2),
            }
        )
    rows[0]["ratio_p50_vs_polling"] = round(rows[0]["p50_ms"] / rows[1]["p50_ms"], 3)
    return rows
