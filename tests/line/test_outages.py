"""Outages: a cut network link, and a line process killed with results still spooled."""

import asyncio
import os
import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from loupe_line import LineClient
from loupe_line.spool import summarize
from loupe_shared.contracts.results import ResultBatch
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.processes import free_port
from loupe_stack.stack import Stack
from tests.line.conftest import SettingsFactory
from tests.line.helpers import new_result, read_batches, result_ids
from tests.support import CuttableProxy, until

CLI = str(Path(sys.executable).parent / "loupe-line")


# While the link is cut the proxy accepts and drops every reconnect attempt; nats-py 2.16
# replaces the stream writer of a failed attempt without closing it, and the garbage
# collector warns about it (the socket is closed then). Benign, and not this client's doing.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function StreamWriter.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)
async def test_a_network_cut_spools_then_replays_everything_in_order(
    platform: Stack, line_settings: SettingsFactory, nats_settings: NatsSettings, namespace: str
) -> None:
    target = urlsplit(platform.endpoints.nats_url)
    assert target.hostname is not None
    assert target.port is not None
    proxy = CuttableProxy(target.hostname, target.port)
    settings = line_settings(
        nats_url=f"nats://{proxy.endpoint}",
        reconnect_wait_s=0.1,
        retry_base_s=0.05,
        retry_max_s=0.5,
        breaker_failures=3,
        breaker_cooldown_s=0.5,
        # Long: nothing below may wait for an ack timeout, and one would show.
        publish_timeout_s=60,
    )
    sent: list[str] = []

    async def submit(count: int) -> list[asyncio.Future[None]]:
        results = [new_result() for _ in range(count)]
        sent.extend(r["result_id"] for r in results)
        return [await client.submit(r) for r in results]

    async def publish(count: int) -> None:
        await asyncio.gather(*await submit(count))

    try:
        async with LineClient(settings) as client:
            await publish(1000)
            assert client.stats().published == 1000

            # Cut with batches in flight: their acks are given up and they are spooled.
            in_flight = await submit(1500)
            proxy.cut()
            await until("the cut is noticed", lambda: not client.stats().connected)
            # publish() waits for the disk, not for an ack timeout: the acks on the dropped
            # link are given up at once, and what follows goes straight to the spool. Were
            # either to wait for publish_timeout_s (60 s), this would time out at half of it.
            await asyncio.wait_for(
                asyncio.gather(publish(2000), *in_flight), settings.publish_timeout_s / 2
            )
            stats = client.stats()
            assert stats.in_flight == 0
            assert stats.lost == 0
            assert stats.published + stats.spooled == 4500
            assert stats.spooled >= 2000
            assert stats.spool_depth > 0
            await until("the breaker opens", lambda: client.stats().breaker == "open")

            proxy.restore()
            # Results accepted while the spool drains queue up behind it.
            await publish(1000)
            assert await client.wait_replayed(timeout_s=20)
            await publish(500)
            stats = client.stats()
    finally:
        proxy.close()

    assert stats.breaker == "closed"
    assert stats.published + stats.replayed == 6000
    stored = result_ids(await read_batches(nats_settings, namespace))
    duplicates = [i for i, n in Counter(stored).items() if n > 1]
    assert duplicates == [], "JetStream's duplicate window should have dropped re-sends"
    assert stored == sent


def _spooled_ids(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT payload FROM spool ORDER BY seq").fetchall()
    finally:
        db.close()
    return [
        str(r.result_id)
        for (payload,) in rows
        for r in ResultBatch.model_validate_json(payload).results
    ]


async def test_a_spool_left_by_a_killed_line_is_replayed_by_the_next_client(
    line_settings: SettingsFactory, nats_settings: NatsSettings, namespace: str, tmp_path: Path
) -> None:
    spool = tmp_path / "killed.sqlite3"
    env = {
        **os.environ,
        # Nothing listens there: the line spools everything.
        "LOUPE_LINE_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "LOUPE_LINE_NAMESPACE": namespace,
        "LOUPE_LINE_CONNECT_TIMEOUT_S": "0.2",
    }
    line = await asyncio.create_subprocess_exec(
        CLI, "simulate", "--line-id", "L1", "--count", "10000000", "--rate", "0",
        "--spool", str(spool), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await until("the line has spooled 3,000 results", lambda: summarize(spool).items >= 3000)
    finally:
        line.send_signal(signal.SIGKILL)
        assert await line.wait() == -signal.SIGKILL
    left = _spooled_ids(spool)
    assert len(left) >= 3000

    status = await asyncio.create_subprocess_exec(
        CLI, "spool-status", "--spool", str(spool), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await status.communicate()
    assert await status.wait() == 0
    assert f"{len(left)} results" in out.decode()

    async with LineClient(line_settings(spool_path=spool)) as client:
        assert await client.wait_replayed(timeout_s=20)
        stats = client.stats()
    assert stats.replayed == len(left)
    assert summarize(spool).messages == 0
    assert result_ids(await read_batches(nats_settings, namespace)) == left
