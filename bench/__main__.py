"""`python -m bench [name ...]`: run benchmarks against a fresh embedded stack."""

import argparse
import json
import platform as host_platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.support import free_stack_ports

from bench.backup import bench_backup
from bench.catalog import bench_catalog
from bench.client import bench_client
from bench.cluster import bench_cluster
from bench.console import bench_console
from bench.images import bench_images
from bench.inspect import bench_inspect
from bench.legacy import bench_legacy
from bench.outbox import bench_outbox
from bench.results import bench_results
from bench.summarize import print_table
from loupe_shared.kit.logging import configure_logging
from loupe_stack.config import StackSettings
from loupe_stack.processes import free_port
from loupe_stack.stack import Stack

Row = dict[str, object]


def _settings(data_dir: Path, frontend_port: int | None = None) -> StackSettings:
    ports = free_stack_ports()
    values: dict[str, object] = {"data_dir": data_dir, **{k.lower(): v for k, v in ports.items()}}
    if frontend_port is not None:  # the client benchmark's page calls the gateway from there
        values["cors_origins"] = f"http://127.0.0.1:{frontend_port}"
    return StackSettings.model_validate(values)


def bench_startup(data_dir: Path) -> list[Row]:
    rows: list[Row] = []
    settings = _settings(data_dir)
    for label in ("cold (new data folder)", "warm (existing data folder)"):
        stack = Stack(settings)
        started = time.perf_counter()
        stack.start()
        seconds = time.perf_counter() - started
        stack.stop()
        rows.append({"bench": "startup", "case": label, "seconds": round(seconds, 2)})
    return rows


def _timed(call: Callable[[], httpx.Response], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        answer = call()
        samples.append(time.perf_counter() - started)
        answer.raise_for_status()
    return samples


def bench_gateway(stack: Stack, count: int = 400) -> list[Row]:
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    rows: list[Row] = []
    with httpx.Client(headers=headers) as client:
        direct_url = f"{stack.service_url('images')}/api/services/images"
        gateway_url = f"{stack.gateway_url}/api/services/images"

        def getter(url: str) -> Callable[[], httpx.Response]:
            return lambda: client.get(url)

        for url in (direct_url, gateway_url):  # warm up connections and token caches
            _timed(getter(url), 20)
        direct = _timed(getter(direct_url), count)
        via_gateway = _timed(getter(gateway_url), count)
    for case, samples in (
        ("direct to service (baseline)", direct),
        ("through the gateway", via_gateway),
    ):
        rows.append(
            {
                "bench": "gateway",
                "case": case,
                "requests": count,
                "p50_ms": round(statistics.median(samples) * 1000, 3),
                "p95_ms": round(statistics.quantiles(samples, n=20)[18] * 1000, 3),
                "req_per_s": round(count / sum(samples), 1),
            }
        )
    rows[1]["ratio_p50"] = round(float(rows[1]["p50_ms"]) / float(rows[0]["p50_ms"]), 2)  # type: ignore[arg-type]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    everything = [
        "startup",
        "gateway",
        "catalog",
        "images",
        "results",
        "inspect",
        "legacy",
        "outbox",
        "client",
        "console",
        "backup",
        "cluster",
    ]
    parser.add_argument("names", nargs="*", default=everything)
    args = parser.parse_args()
    configure_logging("bench", "warning")
    base = Path(tempfile.mkdtemp(prefix="loupe-bench-"))
    rows: list[Row] = []
    try:
        if "startup" in args.names:
            rows += bench_startup(base / "startup")
        if set(everything[1:-2]) & set(args.names):
            frontend_port = free_port()
            stack = Stack(_settings(base / "data", frontend_port))
            stack.start()
            try:
                if "gateway" in args.names:
                    rows += bench_gateway(stack)
                if "catalog" in args.names:
                    rows += bench_catalog(stack)
                if "images" in args.names:
                    rows += bench_images(stack)
                if "results" in args.names:
                    rows += bench_results(stack, base / "results")
                if "inspect" in args.names:
                    rows += bench_inspect(stack, base / "inspect")
                if "legacy" in args.names:
                    rows += bench_legacy(stack)
                if "outbox" in args.names:
                    rows += bench_outbox(stack)
                if "client" in args.names:
                    rows += bench_client(stack, frontend_port)
                if "console" in args.names:
                    rows += bench_console(stack, base / "console")
            finally:
                stack.stop()
        if "backup" in args.names:
            # A stack of its own: the backup then holds the 2,000 images and nothing that the
            # other benchmarks left in the database, and its maintenance window disturbs nobody.
            stack = Stack(_settings(base / "backup"))
            stack.start()
            try:
                rows += bench_backup(stack)
            finally:
                stack.stop()
        if "cluster" in args.names:
            # Cluster mode: three NATS nodes, two processes of each service (its own stack).
            rows += bench_cluster(base / "cluster")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    meta = {
        "python": sys.version.split()[0],
        "machine": host_platform.machine(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "latest.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print()
    print_table([rows])  # the ratios issue 19 tracks, beside their goals
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
