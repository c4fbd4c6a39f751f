"""Result ingesters running apart from the catalog's API serve their own metrics, so what
they ingest and set aside reaches Prometheus (the catalog's /metrics knows nothing of them)."""

import asyncio
import urllib.request
import uuid
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from loupe_line import LineClient
from loupe_line.settings import LineSettings
from loupe_stack.config import CLUSTER_REPLICAS, INGESTER_METRICS
from loupe_stack.stack import Stack
from tests.line.helpers import new_result
from tests.support import until

RESULTS = 200
# What the alerts and dashboards read of an ingester (names without `_total`, as parsed).
FAMILIES = ("results_ingested", "results_ingest_batch_seconds", "consumer_dead_lettered")


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert answer.status == 200
        return str(answer.read().decode())


def _families(port: int) -> set[str]:
    return {family.name for family in text_string_to_metric_families(_scrape(port))}


def _samples(port: int) -> dict[str, float]:
    """Each sample's name (with its line, where it has one) and value, summed over the
    other labels (a line's results are counted by verdict)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(_scrape(port)):
        for sample in family.samples:
            line = sample.labels.get("line")
            key = sample.name + (f"[{line}]" if line else "")
            found[key] = found.get(key, 0.0) + sample.value
    return found


def _ports(stack: Stack) -> list[int]:
    return [stack.settings.port_of(INGESTER_METRICS, n) for n in range(1, CLUSTER_REPLICAS + 1)]


def _ingested(stack: Stack, line: str) -> float:
    return sum(
        _samples(port).get(f"results_line_ingested_total[{line}]", 0.0) for port in _ports(stack)
    )


async def test_each_ingester_serves_what_it_ingested_and_set_aside(
    cluster: Stack, tmp_path: Path
) -> None:
    ports = _ports(cluster)
    assert len(set(ports)) == 2
    for port in ports:
        exported = _families(port)
        for family in FAMILIES:
            assert family in exported, sorted(exported)
    line = f"m{uuid.uuid4().hex[:6]}"
    e = cluster.endpoints
    settings = LineSettings(
        nats_url=e.nats_url,
        nats_user=e.nats_user,
        nats_password=e.nats_password,
        line_id=line,
        spool_path=tmp_path / "spool.sqlite3",
    )
    async with LineClient(settings) as client:
        await asyncio.gather(*[await client.submit(new_result(line)) for _ in range(RESULTS)])
        assert await client.wait_replayed(timeout_s=60)
    await until(
        "both ingesters' counts add up to what the line published",
        lambda: _ingested(cluster, line) == RESULTS,
        timeout_s=60,
    )
