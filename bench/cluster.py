"""Scaling in cluster mode (three NATS nodes, every stream at 3 replicas), side by side in one
run on one machine:

1. inspection throughput with 1, 2 and 3 workers sharing one request stream (a consumer
   group), 1 MP captures; the ratio is to one worker;
2. result ingest with 1 and 2 ingesters sharing one results stream: the seconds from the first
   batch published until every row is in PostgreSQL; the ratio is to one ingester.

On 2 cores a second worker or ingester competes with the first (and with NATS, PostgreSQL and
the publisher) for the same cores: the figures say what the machine allows, not what more
machines would.
"""

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from tests.inspect import synthetic
from tests.support import free_stack_ports

from bench.inspect import _prepare_namespace, _program, _request, _round_trip, _upload, _Workers
from bench.results import _result
from loupe_shared.contracts import subjects
from loupe_shared.kit.nats import connect, ensure_streams
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.config import CLUSTER_NATS_NODES, StackSettings
from loupe_stack.processes import ManagedProcess
from loupe_stack.stack import Stack

Row = dict[str, Any]
INSPECTIONS = 48
INGEST = 40_000
PER_MESSAGE = 250


def cluster_settings(data_dir: Path) -> StackSettings:
    ports = free_stack_ports(cluster=True)
    return StackSettings.model_validate(
        {
            "data_dir": data_dir,
            "cluster": True,
            "log_level": "warning",
            **{k.lower(): v for k, v in ports.items()},
        }
    )


async def _replicated_namespace(settings: NatsSettings) -> None:
    nc = await connect(settings, "bench")
    try:
        await ensure_streams(nc.jetstream(), settings.namespace, replicas=CLUSTER_NATS_NODES)
    finally:
        await nc.close()


def _inspection_rows(stack: Stack, work: Path) -> list[Row]:
    namespace = f"bc{uuid.uuid4().hex[:6]}"
    settings = stack.endpoints.nats(namespace)
    asyncio.run(_replicated_namespace(settings))
    asyncio.run(_prepare_namespace(settings, stack.admin_token))
    good = synthetic.make_case(synthetic.HELD_OUT_SEEDS[0], size=(1280, 960), bad=False)
    master = _upload(stack, synthetic.encode_png(good.master), "master", "image/png")
    capture = _upload(stack, synthetic.encode_png(good.capture), "capture", "image/png")
    program = _program(stack, synthetic.program_config(good.roi), master)
    rows: list[Row] = []
    for count in (1, 2, 3):
        workers = _Workers(stack, settings, work)
        workers.start(count)
        try:
            asyncio.run(_round_trip(settings, [_request(program, capture) for _ in range(4)]))
            seconds = asyncio.run(
                _round_trip(settings, [_request(program, capture) for _ in range(INSPECTIONS)])
            )
        finally:
            workers.stop()
        rows.append(
            {
                "bench": "cluster",
                "case": f"inspection, {count} worker{'s' if count > 1 else ''} (1 MP)",
                "inspections": INSPECTIONS,
                "per_s": round(INSPECTIONS / seconds, 2),
            }
        )
    base = float(rows[0]["per_s"])
    for row in rows:
        row["ratio_to_one"] = round(float(row["per_s"]) / base, 2)
    return rows


async def _ingest_round(stack: Stack, namespace: str, line_id: str, total: int) -> float:
    """Publish `total` results in batches; seconds until PostgreSQL holds them all."""
    messages = [
        orjson.dumps(
            {"results": [_result(i + j, line_id) for j in range(min(PER_MESSAGE, total - i))]}
        )
        for i in range(0, total, PER_MESSAGE)
    ]
    nc = await connect(stack.endpoints.nats(namespace), "bench")
    conn = await stack.endpoints.pg_connect()
    try:
        js = nc.jetstream()
        subject = subjects.subject(subjects.RESULTS_RECORDED, namespace)
        started = time.perf_counter()
        for start in range(0, len(messages), 32):
            await asyncio.gather(
                *(
                    js.publish(subject, body, headers={"Nats-Msg-Id": uuid.uuid4().hex})
                    for body in messages[start : start + 32]
                )
            )
        count = "SELECT count(*) FROM results WHERE line_id = $1"
        deadline = time.monotonic() + 300
        stored = 0
        while stored < total:  # polled: the rows land in another process
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stored} of {total} results stored")
            stored = await conn.fetchval(count, line_id)
            await asyncio.sleep(0.05)
        return time.perf_counter() - started
    finally:
        await conn.close()
        await nc.close()


def _ingester(stack: Stack, namespace: str, number: int, work: Path) -> ManagedProcess:
    process = ManagedProcess(
        f"ingester-bench-{number}",
        [sys.executable, "-m", "loupe_catalog", "ingest"],
        env={**stack.service_env("catalog"), "CATALOG_NAMESPACE": namespace},
        log_path=work / f"ingester-bench-{number}.log",
    )
    process.start()
    return process


def _ingest_rows(stack: Stack, work: Path) -> list[Row]:
    rows: list[Row] = []
    for count in (1, 2):
        namespace = f"bi{uuid.uuid4().hex[:6]}"
        asyncio.run(_replicated_namespace(stack.endpoints.nats(namespace)))
        ingesters = [_ingester(stack, namespace, n, work) for n in range(count)]
        try:
            # A first batch through, so every ingester has joined before the clock starts.
            asyncio.run(_ingest_round(stack, namespace, f"warm-{namespace}", 1))
            seconds = asyncio.run(_ingest_round(stack, namespace, f"bench-{namespace}", INGEST))
        finally:
            for process in ingesters:
                process.stop()
        rows.append(
            {
                "bench": "cluster",
                "case": f"ingest, {count} ingester{'s' if count > 1 else ''}",
                "results": INGEST,
                "per_s": round(INGEST / seconds),
            }
        )
    rows[1]["ratio_to_one"] = round(float(rows[1]["per_s"]) / float(rows[0]["per_s"]), 2)
    rows[0]["ratio_to_one"] = 1.0
    return rows


def bench_cluster(work: Path) -> list[Row]:
    work.mkdir(parents=True, exist_ok=True)
    stack = Stack(cluster_settings(work / "data"))
    stack.start()
    try:
        return _inspection_rows(stack, work) + _ingest_rows(stack, work)
    finally:
        stack.stop()
