"""Results, each beside its raw baseline in the same run:

1. ingest drain: a stream pre-filled with 200,000 results drained into PostgreSQL by one
   ingester, next to a bare COPY of the same (already decoded) rows;
2. one line client's durable publish rate (acknowledged by a stream that syncs every write),
   next to the bare nats-py client publishing the same results one per message and, the
   ceiling, pre-serialized batches;
3. latency from publish to visible in `GET /api/results` (through the gateway) at 2,000
   results/s, next to the latency until the same messages reach a bare NATS subscriber; for
   a reader polling every 10 ms and for one asking with `wait` (answered once the ingest
   stored something new).
"""

import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import orjson
from nats.js.errors import NotFoundError

from loupe_catalog.results.ingest import DURABLE as INGEST_DURABLE
from loupe_catalog.results.rows import COLUMNS, rows
from loupe_line.bench import measure_publish_rate
from loupe_line.client import LineClient
from loupe_line.settings import LineSettings
from loupe_line.simulate import ResultSimulator, SimulationPlan
from loupe_shared.contracts import subjects
from loupe_shared.contracts.results import new_result_id
from loupe_shared.contracts.streams import STREAMS
from loupe_shared.kit.nats import connect, ensure_streams
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.processes import ManagedProcess
from loupe_stack.stack import Stack

DRAIN = 200_000
PER_MESSAGE = 250
PUBLISH_COUNT = 60_000
BARE_SINGLE_COUNT = 10_000
WINDOW = 64
LATENCY_RATE = 2_000
LATENCY_SECONDS = 15.0
POLL_S = 0.01
SINCE_MARGIN = timedelta(milliseconds=50)
DRAIN_NAMESPACE = "benchdrain"
DRAIN_DATABASE = "bench_drain"
PUBLISH_NAMESPACE = "benchpublish"

Row = dict[str, Any]


def _result(i: int, line_id: str) -> dict[str, Any]:
    failed = i % 10 == 0
    defect = {
        "kind": "scratch",
        "bbox": {"x": 1, "y": 2, "width": 30, "height": 4},
        "area": 120.0,
        "score": 0.8,
    }
    return {
        "result_id": str(new_result_id()),  # time-ordered, as the line client makes them
        "line_id": line_id,
        "station": "st-1",
        "part_id": f"p{i}",
        "verdict": "fail" if failed else "pass",
        "score": 0.9,
        "defects": [defect] if failed else [],
        "processing_ms": 21.5,
        "captured_at": datetime.now(UTC).isoformat(),
        "is_simulated": True,
    }


def _nats(stack: Stack, namespace: str = "") -> NatsSettings:
    return stack.endpoints.nats(namespace)


def _line(stack: Stack, work: Path, namespace: str, line_id: str) -> LineSettings:
    e = stack.endpoints
    return LineSettings(
        nats_url=e.nats_url,
        nats_user=e.nats_user,
        nats_password=e.nats_password,
        namespace=namespace,
        line_id=line_id,
        spool_path=work / f"{line_id}.spool",
    )


async def _connect_pg(stack: Stack, database: str) -> asyncpg.Connection:
    return await stack.endpoints.pg_connect(database)


async def _publish_all(settings: NatsSettings, messages: list[bytes], window: int) -> float:
    """Publish `messages` to the results subject, `window` awaiting acks at once; seconds."""
    nc = await connect(settings, "bench")
    try:
        js = nc.jetstream()
        await ensure_streams(js, settings.namespace)
        subject = subjects.subject(subjects.RESULTS_RECORDED, settings.namespace)
        started = time.perf_counter()
        for start in range(0, len(messages), window):
            await asyncio.gather(
                *(
                    js.publish(subject, body, headers={"Nats-Msg-Id": uuid.uuid4().hex})
                    for body in messages[start : start + window]
                )
            )
        return time.perf_counter() - started
    finally:
        await nc.close()


def bench_drain(stack: Stack, work: Path) -> list[Row]:
    namespace = DRAIN_NAMESPACE
    database = DRAIN_DATABASE
    messages = [
        orjson.dumps(
            {"results": [_result(i * PER_MESSAGE + j, "line-d") for j in range(PER_MESSAGE)]}
        )
        for i in range(DRAIN // PER_MESSAGE)
    ]

    async def prepare() -> None:
        conn = await _connect_pg(stack, "postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()
        await _publish_all(_nats(stack, namespace), messages, WINDOW)

    asyncio.run(prepare())
    env = {
        **stack.service_env("catalog"),
        "CATALOG_DB_NAME": database,
        "CATALOG_NAMESPACE": namespace,
    }
    subprocess.run(
        [sys.executable, "-m", "loupe_catalog", "migrate"],
        env=env,
        check=True,
        capture_output=True,
    )
    ingester = ManagedProcess(
        "ingest",
        [sys.executable, "-m", "loupe_catalog", "ingest"],
        env=env,
        log_path=work / "ingest.log",
    )

    async def watch(started: float, timeout_s: float = 600.0) -> tuple[float, int, float]:
        """(time of the first commit, rows then, time the last row landed). Watched through
        the consumer's acknowledged messages (each acknowledged after its rows committed):
        counting the table every few milliseconds would load the database the ingester
        writes to, which the bare COPY does not have to share. The count is checked last."""
        nc = await connect(_nats(stack, namespace), "bench-watch")
        first: tuple[float, int] | None = None
        acked = 0
        try:
            js = nc.jetstream()
            stream = subjects.stream_name("RESULTS", namespace)
            while time.perf_counter() - started < timeout_s:
                try:
                    info = await js.consumer_info(stream, INGEST_DURABLE)
                except NotFoundError:  # the ingester has not made it yet
                    await asyncio.sleep(0.02)
                    continue
                now = time.perf_counter()
                acked = info.ack_floor.stream_seq if info.ack_floor else 0  # all up to it
                if acked and first is None:
                    first = (now, acked * PER_MESSAGE)
                if acked and not info.num_pending and not info.num_ack_pending:
                    assert first is not None
                    break
                await asyncio.sleep(0.02)
            else:
                raise TimeoutError(f"the ingester stored {acked} of {len(messages)} messages")
        finally:
            await nc.close()
        conn = await _connect_pg(stack, database)
        try:
            stored = int(await conn.fetchval("SELECT count(*) FROM results"))
            assert stored == DRAIN, f"{stored} of {DRAIN} results stored"
        finally:
            await conn.close()
        return first[0], first[1], now

    decoded = [row for body in messages for row in rows(body)]

    async def bare_copy(table: str, like: str) -> float:
        conn = await _connect_pg(stack, database)
        try:
            await conn.execute(f"CREATE TABLE {table} (LIKE results {like})")
            began = time.perf_counter()
            await conn.copy_records_to_table(table, records=decoded, columns=COLUMNS)
            return time.perf_counter() - began
        finally:
            await conn.close()

    # The indexed COPY runs before the drain and after it, and the faster of the two is the
    # baseline: on a shared machine a busy spell then cannot make the ingester look better.
    copy_before = DRAIN / asyncio.run(bare_copy("copy_baseline_before", "INCLUDING ALL"))
    started = time.perf_counter()
    ingester.start()
    try:
        first_at, first_rows, done_at = asyncio.run(watch(started))
    finally:
        ingester.stop()
    copy_after = DRAIN / asyncio.run(bare_copy("copy_baseline", "INCLUDING ALL"))
    copy_rate = max(copy_before, copy_after)
    bare_rate = DRAIN / asyncio.run(bare_copy("copy_unindexed", "INCLUDING DEFAULTS"))
    steady_rate = (DRAIN - first_rows) / (done_at - first_at)
    return [
        {
            "bench": "results-drain",
            "case": "bare COPY of the same decoded rows, no indexes (physical limit)",
            "results": DRAIN,
            "results_per_s": round(bare_rate),
        },
        {
            "bench": "results-drain",
            "case": "bare COPY of the same decoded rows, same indexes (baseline)",
            "results": DRAIN,
            "results_per_s": round(copy_rate),
            "before_and_after_the_drain": [round(copy_before), round(copy_after)],
        },
        {
            "bench": "results-drain",
            "case": "stream drained by one ingester (first commit to last)",
            "results": DRAIN,
            "results_per_s": round(steady_rate),
            "seconds_incl_process_start": round(done_at - started, 2),
            "ratio": round(steady_rate / copy_rate, 2),
            "ratio_vs_unindexed": round(steady_rate / bare_rate, 2),
        },
    ]


def bench_publish(stack: Stack, work: Path) -> list[Row]:
    namespace = PUBLISH_NAMESPACE
    settings = _line(stack, work, namespace, "line-p")
    simulator = ResultSimulator(SimulationPlan(line_id="line-p", seed=2))
    singles = [
        orjson.dumps({"results": [simulator.next().model_dump(mode="json")]})
        for _ in range(BARE_SINGLE_COUNT)
    ]
    batches = [
        orjson.dumps(
            {
                "results": [
                    simulator.next().model_dump(mode="json") for _ in range(settings.batch_max)
                ]
            }
        )
        for _ in range(PUBLISH_COUNT // settings.batch_max)
    ]
    nats_settings = _nats(stack, namespace)
    single_rate = BARE_SINGLE_COUNT / asyncio.run(_publish_all(nats_settings, singles, WINDOW))
    batched_rate = PUBLISH_COUNT / asyncio.run(_publish_all(nats_settings, batches, WINDOW))
    models = asyncio.run(measure_publish_rate(settings, PUBLISH_COUNT))
    dicts = asyncio.run(measure_publish_rate(settings, PUBLISH_COUNT, from_dicts=True))
    base = {"bench": "line-publish", "acked_by": "stream syncing every write"}
    return [
        {
            **base,
            "case": "bare nats-py, one result per message, 64 in flight (baseline)",
            "results": BARE_SINGLE_COUNT,
            "results_per_s": round(single_rate),
        },
        {
            **base,
            "case": f"bare nats-py, pre-serialized batches of {settings.batch_max} (ceiling)",
            "results": PUBLISH_COUNT,
            "results_per_s": round(batched_rate),
        },
        {
            **base,
            "case": "line client, InspectionResult models",
            "results": PUBLISH_COUNT,
            "results_per_s": round(models),
            "vs_one_per_message": round(models / single_rate, 1),
            "vs_ceiling": round(models / batched_rate, 2),
        },
        {
            **base,
            "case": "line client, dicts validated on submit",
            "results": PUBLISH_COUNT,
            "results_per_s": round(dicts),
            "vs_one_per_message": round(dicts / single_rate, 1),
            "vs_ceiling": round(dicts / batched_rate, 2),
        },
    ]


def _percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100)
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
        "max_ms": round(max(samples) * 1000, 1),
    }


async def _latency(stack: Stack, work: Path, reader: str) -> tuple[list[float], list[float], int]:
    """`reader`: "poll" asks every `POLL_S` for what was captured lately; "wait" asks for what
    was captured after the newest it has with `wait`, and again as soon as it is answered."""
    line_id = f"line-latency-{reader}"
    submitted: dict[str, float] = {}
    on_wire: dict[str, float] = {}
    visible: dict[str, float] = {}
    total = int(LATENCY_RATE * LATENCY_SECONDS)

    e = stack.endpoints
    raw = await nats.connect(e.nats_url, user=e.nats_user, password=e.nats_password)

    async def heard(msg: Any) -> None:
        now = time.perf_counter()
        for result in orjson.loads(msg.data).get("results", []):
            if result.get("line_id") == line_id:
                on_wire.setdefault(result["result_id"], now)

    await raw.subscribe(subjects.subject(subjects.RESULTS_RECORDED, ""), cb=heard)
    started_at = datetime.now(UTC)
    done = asyncio.Event()

    async def read(client: httpx.AsyncClient, since: datetime, *, whole: bool) -> None:
        """Note the results first seen; newest first, paging back while a page is all new
        (or, `whole`, to the end)."""
        params: dict[str, str | int] = {
            "line_id": line_id,
            "since": since.isoformat(),
            "limit": 1000,
        }
        cursor: str | None = None
        while True:
            page = await client.get(
                "/api/results", params={**params, **({"cursor": cursor} if cursor else {})}
            )
            page.raise_for_status()
            body = page.json()
            now = time.perf_counter()
            fresh = [i for i in body["items"] if i["result_id"] not in visible]
            for item in fresh:
                visible[item["result_id"]] = now
                captured[0] = max(captured[0], datetime.fromisoformat(item["captured_at"]))
            cursor = body["next_cursor"]
            if not cursor or (not whole and len(fresh) < len(body["items"])):
                return

    captured = [started_at]

    async def poll(client: httpx.AsyncClient) -> None:
        # A reader of new results asks for what was captured since the newest it has seen
        # (less a margin), not for the last thousand again: every poll would otherwise move
        # and parse a thousand results, loading the machine the measurement runs on. A
        # result that shows up later than the margin allows is found by the final sweep
        # and counted at that (later) time, so the shortcut can only make figures worse.
        stalled_since = time.perf_counter()
        while not (done.is_set() and len(visible) >= total):
            seen = len(visible)
            await read(client, max(started_at, captured[0] - SINCE_MARGIN), whole=False)
            if len(visible) > seen:
                stalled_since = time.perf_counter()
            elif done.is_set() and time.perf_counter() - stalled_since > 1.0:
                await read(client, started_at, whole=True)
                stalled_since = time.perf_counter()
            await asyncio.sleep(POLL_S)

    async def follow(client: httpx.AsyncClient) -> None:
        # Each answer holds what was stored since the last (the catalog answers a waiting
        # reader as soon as the ingest commits); a page that is full is read back to the
        # newest already seen. A result stored behind a newer capture is found by the final
        # sweep and counted at that (later) time.
        newest = started_at
        stalled_since = time.perf_counter()
        while not (done.is_set() and len(visible) >= total):
            params: dict[str, str | int | float] = {
                "line_id": line_id,
                "since": (newest + timedelta(microseconds=1)).isoformat(),
                "limit": 1000,
                "wait": 1,
            }
            page = await client.get("/api/results", params=params)
            page.raise_for_status()
            body = page.json()
            now = time.perf_counter()
            for item in body["items"]:
                visible.setdefault(item["result_id"], now)
                newest = max(newest, datetime.fromisoformat(item["captured_at"]))
            if body["next_cursor"]:
                await read(client, newest - SINCE_MARGIN, whole=True)
            if body["items"]:
                stalled_since = time.perf_counter()
            elif done.is_set() and time.perf_counter() - stalled_since > 1.0:
                await read(client, started_at, whole=True)
                stalled_since = time.perf_counter()

    simulator = ResultSimulator(SimulationPlan(line_id=line_id, seed=3))
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    async with (
        httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as client,
        LineClient(_line(stack, work, "", line_id)) as line,
    ):
        poller = asyncio.create_task(poll(client) if reader == "poll" else follow(client))
        started = time.perf_counter()
        for i in range(total):
            due = started + i / LATENCY_RATE
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            result = simulator.next()
            submitted[str(result.result_id)] = time.perf_counter()
            await line.submit(result)
        await line.flush()
        done.set()
        await asyncio.wait_for(poller, timeout=120)
        spooled = line.stats().spooled
    await raw.close()
    visible_s = [visible[k] - t for k, t in submitted.items()]
    wire_s = [on_wire[k] - t for k, t in submitted.items() if k in on_wire]
    return visible_s, wire_s, spooled


READERS = {
    "poll": f"polled every {POLL_S * 1000:g} ms",
    "wait": "asked again with `wait` as soon as answered",
}


def bench_latency(stack: Stack, work: Path) -> list[Row]:
    found: list[Row] = []
    for reader, how in READERS.items():
        visible, wire, spooled = asyncio.run(_latency(stack, work, reader))
        base = {
            "bench": "results-latency",
            "rate_per_s": LATENCY_RATE,
            "results": len(visible),
            "reader": reader,
        }
        found += [
            {
                **base,
                "case": "submit to delivered to a bare NATS subscriber (baseline)",
                **_percentiles(wire),
            },
            {
                **base,
                "case": f"submit to visible in GET /api/results via the gateway, {how}",
                **_percentiles(visible),
                "spooled": spooled,
            },
        ]
    return found


async def _clear_away(stack: Stack) -> None:
    """What the drain and publish benchmarks left: their database (200,000 results and the
    baselines' 600,000 rows in throwaway tables) and their streams; then a checkpoint. The
    latency benchmark then does not pay for their writes (PostgreSQL writing them out in a
    checkpoint during its 15 s stalls the catalog's commits), as a stack with nothing
    before it would not."""
    conn = await _connect_pg(stack, "postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DRAIN_DATABASE}" WITH (FORCE)')
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    nc = await connect(_nats(stack), "bench-clear")
    try:
        js = nc.jetstream()
        for namespace in (DRAIN_NAMESPACE, PUBLISH_NAMESPACE):
            for spec in STREAMS:
                with suppress(NotFoundError):
                    await js.delete_stream(subjects.stream_name(spec.name, namespace))
    finally:
        await nc.close()


def bench_results(stack: Stack, work: Path) -> list[Row]:
    work.mkdir(parents=True, exist_ok=True)
    rows = bench_drain(stack, work) + bench_publish(stack, work)
    asyncio.run(_clear_away(stack))
    return rows + bench_latency(stack, work)
