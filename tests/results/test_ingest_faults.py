"""No result lost or counted twice: three simulated lines publish 30,000 results while NATS is
killed -9 and restarted once and the ingester twice; and a line whose network is cut spools
and replays. Each test runs its own NATS server (its data directory, its port), ingester and
database, so the faults touch nothing else; every wait is on a condition, and bounded."""

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loupe_shared.kit.nats import connect, ensure_streams
from loupe_shared.kit.settings import NatsSettings
from loupe_stack import servers
from loupe_stack.processes import ManagedProcess, free_port, tcp_open, wait_until
from loupe_stack.stack import Stack
from tests.databases import sql
from tests.support import CuttableProxy, eventually

PASSWORD = "faulttests"


class Rig:
    """A NATS server, a migrated database and an ingester of the test's own."""

    def __init__(
        self, platform: Stack, database: str, base: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.platform = platform
        self.database = database
        self.base = base
        self.port = free_port()
        self.nats = servers.nats(base / "nats", self.port, free_port(), PASSWORD, base, 5)
        self.catalog_env = {
            **platform.service_env("catalog"),
            "CATALOG_DB_NAME": database,
            "CATALOG_NATS_URL": f"nats://127.0.0.1:{self.port}",
            "CATALOG_NATS_USER": "loupe",
            "CATALOG_NATS_PASSWORD": PASSWORD,
            **(extra_env or {}),
        }
        self.ingester = self.new_ingester("ingest")

    def new_ingester(self, name: str) -> ManagedProcess:
        return ManagedProcess(
            name,
            [sys.executable, "-m", "loupe_catalog", "ingest"],
            env=self.catalog_env,
            log_path=self.base / f"{name}.log",
        )

    def start(self) -> None:
        self.start_nats()
        settings = NatsSettings(
            nats_url=f"nats://127.0.0.1:{self.port}", nats_user="loupe", nats_password=PASSWORD
        )

        async def streams() -> None:
            nc = await connect(settings, "tests")
            try:
                await ensure_streams(nc.jetstream())
            finally:
                await nc.close()

        asyncio.run(streams())
        subprocess.run(
            [sys.executable, "-m", "loupe_catalog", "migrate"],
            env=self.catalog_env,
            check=True,
            capture_output=True,
        )
        self.ingester.start()

    def start_nats(self) -> None:
        self.nats.start()
        wait_until("nats", lambda: tcp_open(self.port), self.nats, 30)

    @staticmethod
    def kill(process: ManagedProcess) -> None:
        assert process.popen is not None
        process.popen.kill()
        process.popen.wait()

    def line(
        self, line_id: str, count: int, rate: int, nats_port: int | None = None
    ) -> "subprocess.Popen[bytes]":
        env = {
            **os.environ,
            "LOUPE_LINE_NATS_URL": f"nats://127.0.0.1:{nats_port or self.port}",
            "LOUPE_LINE_NATS_USER": "loupe",
            "LOUPE_LINE_NATS_PASSWORD": PASSWORD,
            "LOUPE_LINE_LINE_ID": line_id,
            "LOUPE_LINE_SPOOL_PATH": str(self.base / f"{line_id}.spool"),
        }
        # The child keeps its own descriptor of the log; ours is closed straight away.
        with (self.base / f"{line_id}.log").open("wb") as log:
            return subprocess.Popen(
                [
                    shutil.which("loupe-line", path=str(Path(sys.executable).parent))
                    or "loupe-line",
                    "simulate",
                    "--line-id",
                    line_id,
                    "--count",
                    str(count),
                    "--rate",
                    str(rate),
                    "--fail-rate",
                    "0.1",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def count(self, where: str = "true") -> int:
        statement = "SELECT count(*) FROM results WHERE " + where  # noqa: S608
        return int(sql(self.platform, self.database, statement)[0][0])

    def stop(self) -> None:
        for process in (self.ingester, self.nats):
            process.stop()


@pytest.fixture
def rig(platform: Stack, scratch_database: str, tmp_path: Path) -> Iterator[Rig]:
    found = Rig(platform, scratch_database, tmp_path)
    found.start()
    try:
        yield found
    finally:
        found.stop()


def test_30000_results_survive_nats_and_ingester_kills(rig: Rig) -> None:
    lines = [rig.line(f"line-{i}", 10_000, 1_000) for i in range(3)]
    try:
        eventually("3,000 stored", lambda: rig.count() >= 3_000, timeout_s=60)
        rig.kill(rig.ingester)
        rig.ingester.start()
        eventually("10,000 stored", lambda: rig.count() >= 10_000, timeout_s=90)
        rig.kill(rig.nats)
        rig.start_nats()
        eventually("18,000 stored", lambda: rig.count() >= 18_000, timeout_s=120)
        rig.kill(rig.ingester)
        rig.ingester.start()
        for line in lines:
            assert line.wait(timeout=180) == 0
    finally:
        for line in lines:
            if line.poll() is None:
                line.kill()
    eventually("all 30,000 stored", lambda: rig.count() >= 30_000, timeout_s=120)
    assert rig.count() == 30_000
    for i in range(3):
        assert rig.count(f"line_id = 'line-{i}'") == 10_000
    distinct = sql(rig.platform, rig.database, "SELECT count(DISTINCT result_id) FROM results")
    assert distinct[0][0] == 30_000


def test_a_line_cut_off_spools_and_replays_everything(rig: Rig) -> None:
    proxy = CuttableProxy("127.0.0.1", rig.port)
    try:
        line = rig.line("line-cut", 6_000, 1_000, nats_port=proxy.port)
        eventually("1,000 stored", lambda: rig.count() >= 1_000, timeout_s=60)
        proxy.cut()
        spool = rig.base / "line-cut.spool"
        # While cut off, the line keeps accepting results: they pile up in its spool.
        eventually("spooling", lambda: _spool_depth(spool) >= 5, timeout_s=60)
        stored_while_cut = rig.count()
        proxy.restore()
        assert line.wait(timeout=120) == 0
        eventually("all 6,000 stored", lambda: rig.count() >= 6_000, timeout_s=120)
        assert rig.count() == 6_000
        assert stored_while_cut < 6_000
    finally:
        proxy.close()


def _spool_depth(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM spool").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def test_two_ingesters_share_the_stream_and_store_each_result_once(
    platform: Stack, scratch_database: str, tmp_path: Path
) -> None:
    # Small fetches, so both ingesters keep asking for work while the line publishes.
    rig = Rig(
        platform,
        scratch_database,
        tmp_path,
        {"CATALOG_INGEST_FETCH_MESSAGES": "2", "CATALOG_LOG_LEVEL": "debug"},
    )
    rig.start()
    second = rig.new_ingester("ingest-2")
    second.start()
    try:
        line = rig.line("line-pair", 20_000, 4_000)
        assert line.wait(timeout=120) == 0
        eventually("all 20,000 stored", lambda: rig.count() >= 20_000, timeout_s=120)
        assert rig.count() == 20_000
    finally:
        second.stop()
        rig.stop()
    for name in ("ingest", "ingest-2"):
        assert "results.stored" in (tmp_path / f"{name}.log").read_text(), f"{name} stored nothing"
