"""3 lines x 10,000 results through the line client while the test kills -9 the NATS node
leading the results stream (then restarts it), one catalog replica and one result ingester:
exactly 30,000 rows, no duplicate."""

import asyncio
import time
import uuid
from pathlib import Path

from loupe_line import LineClient
from loupe_line.settings import LineSettings
from loupe_stack.stack import Stack
from tests.cluster.conftest import stream_leader, wait_nats_node
from tests.line.helpers import new_result
from tests.support import until

LINES = 3
PER_LINE = 10_000
CHUNK = 500


async def _rows(stack: Stack, lines: list[str]) -> tuple[int, int]:
    conn = await stack.endpoints.pg_connect()
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT result_id) AS d FROM results "
            "WHERE line_id = ANY($1::text[])",
            lines,
        )
        assert row is not None
        return int(row["n"]), int(row["d"])
    finally:
        await conn.close()


async def test_30000_results_survive_a_nats_node_a_catalog_replica_and_an_ingester_killed(
    cluster: Stack, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    lines = [f"k{tag}-{n}" for n in range(LINES)]
    e = cluster.endpoints
    sent: dict[str, list[str]] = {line: [] for line in lines}
    published = 0

    async def line(line_id: str) -> None:
        nonlocal published
        settings = LineSettings(
            nats_url=e.nats_url,
            nats_user=e.nats_user,
            nats_password=e.nats_password,
            line_id=line_id,
            spool_path=tmp_path / f"{line_id}.sqlite3",
            reconnect_wait_s=0.2,
            retry_base_s=0.05,
            retry_max_s=1.0,
        )
        async with LineClient(settings) as client:
            for _ in range(PER_LINE // CHUNK):
                results = [new_result(line_id) for _ in range(CHUNK)]
                sent[line_id].extend(r["result_id"] for r in results)
                await asyncio.gather(*[await client.submit(r) for r in results])
                published += CHUNK
            assert await client.wait_replayed(timeout_s=120)
            stats = client.stats()
            assert stats.lost == 0, stats

    publishing = asyncio.gather(*(line(line_id) for line_id in lines))
    # Kill each part once a share of the results is out, the publishers going on meanwhile.
    leader = stream_leader(cluster, "RESULTS")
    await until("a first share published", lambda: published >= 3_000, timeout_s=120)
    cluster.kill(leader)
    killed_at = time.monotonic()
    await until("a second share published", lambda: published >= 9_000, timeout_s=120)
    catalog = cluster.replicas["catalog"][0]
    cluster.kill(catalog)
    ingester = cluster.ingesters[0]
    cluster.kill(ingester)
    await until("a third share published", lambda: published >= 15_000, timeout_s=120)
    # Started from this thread (a child dies with the thread that started it); waited for
    # from another, the publishers going on.
    cluster.revive(leader)
    await asyncio.to_thread(wait_nats_node, cluster, leader)
    cluster.revive(catalog)
    await asyncio.to_thread(cluster.wait_service_ready, "catalog", 1)
    cluster.revive(ingester)
    await asyncio.wait_for(publishing, timeout=300)

    total = LINES * PER_LINE
    stored: tuple[int, int] = (0, 0)

    async def all_stored() -> bool:
        nonlocal stored
        stored = await _rows(cluster, lines)
        return stored[0] >= total

    await until(f"{total} rows", all_stored, timeout_s=180)
    recovered_s = time.monotonic() - killed_at
    rows, distinct = stored
    print(
        f"\ncluster results: {sum(map(len, sent.values()))} published by {LINES} lines, "
        f"{rows} rows, {distinct} distinct, {rows - distinct} duplicates; all stored "
        f"{recovered_s:.1f} s after the first kill"
    )
    assert sum(map(len, sent.values())) == total
    assert rows == total
    assert distinct == total
