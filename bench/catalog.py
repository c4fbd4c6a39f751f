"""Catalog reads at 10,000 programs / 50,000 revisions, concurrency 16: get-by-id and a
50-item list page through the gateway, each next to a bare FastAPI + psycopg app running the
same SQL, measured in alternating rounds."""

import asyncio
import json
import random
import statistics
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import loadgen
from loupe_stack.processes import free_port, http_ok, wait_until
from loupe_stack.stack import Stack

PROGRAMS = 10_000
REVISIONS_PER_PROGRAM = 5
CONCURRENCY = 16
DURATION_S = 8.0
ROUNDS = 4


def _config(i: int) -> str:
    tools = [
        {
            "id": f"tool_{t}",
            "name": f"Check {t}",
            "type": "difference",
            "enabled": True,
            "roi": {"x": t * 10, "y": 5, "width": 120, "height": 90},
            "threshold": 20 + i % 7,
            "min_defect_area": 30,
            "max_defects": 0,
        }
        for t in range(3)
    ]
    return json.dumps(
        {
            "schema_version": 3,
            "tools": tools,
            "alignment": {
                "method": "ecc",
                "max_shift_px": 20.0,
                "max_rotation_deg": 2.0,
                "scale": 0.5,
            },
            "acquisition": {"trigger_mode": "internal", "exposure": None},
        }
    )


async def seed(stack: Stack) -> list[uuid.UUID]:
    conn = await stack.endpoints.pg_connect()
    try:
        ids = [uuid.uuid4() for _ in range(PROGRAMS)]
        now = datetime.now(UTC)
        await conn.copy_records_to_table(
            "programs",
            columns=[
                "id",
                "name",
                "description",
                "tags",
                "current_revision",
                "data_checksum",
                "created_at",
                "updated_at",
            ],
            records=[
                (
                    pid,
                    f"Bench program {i:05d}",
                    "seeded",
                    ["bench", f"line-{i % 20}"],
                    REVISIONS_PER_PROGRAM,
                    "0" * 64,
                    now - timedelta(seconds=i),
                    now - timedelta(seconds=i),
                )
                for i, pid in enumerate(ids)
            ],
        )
        await conn.copy_records_to_table(
            "program_revisions",
            columns=[
                "program_id",
                "revision",
                "name",
                "description",
                "tags",
                "config",
                "schema_version",
                "data_checksum",
                "created_at",
                "created_by",
                "message",
            ],
            records=[
                (
                    pid,
                    rev,
                    f"Bench program {i:05d}",
                    "seeded",
                    ["bench"],
                    _config(i + rev),
                    3,
                    "0" * 64,
                    now,
                    "bench",
                    "",
                )
                for i, pid in enumerate(ids)
                for rev in range(1, REVISIONS_PER_PROGRAM + 1)
            ],
        )
        await conn.execute("ANALYZE programs; ANALYZE program_revisions")
    finally:
        await conn.close()
    return ids


Case = tuple[str, str, Callable[[], str], dict[str, str]]


def _alternating(group: list[Case]) -> list[dict[str, Any]]:
    """A baseline and Loupe's cases in alternating rounds (after a warm-up of each), so a busy
    spell of the shared machine falls on all: rates over all rounds, latencies the median
    of the rounds' figures."""
    for _, base_url, path_for, headers in group:
        loadgen.measure(path_for, base_url, headers, concurrency=CONCURRENCY, duration_s=2.0)
    rounds: list[list[dict[str, float]]] = [[] for _ in group]
    for _ in range(ROUNDS):
        for i, (_, base_url, path_for, headers) in enumerate(group):
            rounds[i].append(
                asyncio.run(
                    loadgen.run(
                        path_for,
                        base_url,
                        headers,
                        concurrency=CONCURRENCY,
                        duration_s=DURATION_S / ROUNDS,
                    )
                )
            )
    answer = []
    for (case, *_), figures in zip(group, rounds, strict=True):
        requests = sum(f["requests"] for f in figures)
        seconds = sum(f["requests"] / f["req_per_s"] for f in figures)
        answer.append(
            {
                "bench": "catalog",
                "case": case,
                "requests": requests,
                "errors": sum(f["errors"] for f in figures),
                "req_per_s": round(requests / seconds, 1),
                "p50_ms": statistics.median(f["p50_ms"] for f in figures),
                "p99_ms": statistics.median(f["p99_ms"] for f in figures),
            }
        )
    return answer


def bench_catalog(stack: Stack) -> list[dict[str, Any]]:
    ids = asyncio.run(seed(stack))
    e = stack.endpoints
    port = free_port()
    dsn = f"postgresql://{e.pg_user}:{e.pg_password}@{e.pg_host}:{e.pg_port}/{e.pg_database}"
    baseline = subprocess.Popen([sys.executable, "-m", "bench.baseline_app", dsn, str(port)])
    rows: list[dict[str, Any]] = []
    try:
        wait_until("baseline", lambda: http_ok(f"http://127.0.0.1:{port}/docs"), None, 30)
        token = {"Authorization": f"Bearer {stack.admin_token}"}
        cases: list[Case] = [
            (
                "bare FastAPI + psycopg get-by-id (baseline)",
                f"http://127.0.0.1:{port}",
                lambda: f"/programs/{random.choice(ids)}",
                {},
            ),
            (
                "get-by-id through the gateway",
                stack.gateway_url,
                lambda: f"/api/programs/{random.choice(ids)}",
                token,
            ),
            (
                # The catalog alone, as the baseline is asked: what the service costs, without
                # the gateway's hop (which `bench gateway` measures on its own).
                "get-by-id straight to the catalog",
                stack.service_url("catalog"),
                lambda: f"/api/programs/{random.choice(ids)}",
                token,
            ),
            (
                "bare FastAPI + psycopg list page of 50 (baseline)",
                f"http://127.0.0.1:{port}",
                lambda: f"/programs?tag=line-{random.randint(0, 19)}",
                {},
            ),
            (
                "list page of 50 through the gateway",
                stack.gateway_url,
                lambda: f"/api/programs?limit=50&tag=line-{random.randint(0, 19)}",
                token,
            ),
        ]
        for group in (cases[0:3], cases[3:5]):
            rows += _alternating(group)
    finally:
        baseline.terminate()
        baseline.wait(10)
    pk, via_gateway, direct, list_base, listed = rows
    for row in (via_gateway, direct):
        row["throughput_vs_baseline"] = round(row["req_per_s"] / pk["req_per_s"], 2)
        row["p99_vs_baseline"] = round(row["p99_ms"] / pk["p99_ms"], 2)
    listed["throughput_vs_pk_baseline"] = round(listed["req_per_s"] / pk["req_per_s"], 2)
    listed["throughput_vs_list_baseline"] = round(listed["req_per_s"] / list_base["req_per_s"], 2)
    return rows
