"""`loupe-line simulate` end to end against the platform's NATS."""

import asyncio
import os
import signal
import sys
import uuid
from collections import Counter
from pathlib import Path

from loupe_line.spool import summarize
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.processes import free_port
from loupe_stack.stack import Stack
from tests.line.helpers import read_batches
from tests.support import until

CLI = str(Path(sys.executable).parent / "loupe-line")


async def _run(platform: Stack, namespace: str, *args: str) -> tuple[int, str]:
    e = platform.endpoints
    env = {
        **os.environ,
        "LOUPE_LINE_NATS_URL": e.nats_url,
        "LOUPE_LINE_NATS_USER": e.nats_user,
        "LOUPE_LINE_NATS_PASSWORD": e.nats_password,
        "LOUPE_LINE_NAMESPACE": namespace,
    }
    process = await asyncio.create_subprocess_exec(
        CLI, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return await process.wait(), out.decode()


async def test_simulate_publishes_count_results_at_about_the_fail_rate(
    platform: Stack, nats_settings: NatsSettings, namespace: str, tmp_path: Path
) -> None:
    program_id = uuid.uuid4()
    code, out = await _run(
        platform, namespace,
        "simulate", "--line-id", "L7", "--station", "S9", "--count", "2000", "--rate", "0",
        "--fail-rate", "0.2", "--error-rate", "0.05", "--seed", "7",
        "--program-id", str(program_id), "--program-revision", "3",
        "--spool", str(tmp_path / "spool.sqlite3"),
    )  # fmt: skip
    assert code == 0, out
    assert "published  2000" in out
    assert "spooled    0" in out

    results = [
        r for _, batch in await read_batches(nats_settings, namespace) for r in batch.results
    ]
    assert len(results) == len({r.result_id for r in results}) == 2000
    verdicts = Counter(r.verdict for r in results)
    assert 0.15 < verdicts["fail"] / 2000 < 0.25
    assert 0.02 < verdicts["error"] / 2000 < 0.08
    for r in results:
        assert (r.line_id, r.station, r.is_simulated) == ("L7", "S9", True)
        assert (r.program_id, r.program_revision) == (program_id, 3)
        assert r.captured_at.tzinfo is not None
        assert r.processing_ms is not None
        assert r.part_id.startswith("L7-")
        assert bool(r.defects) == (r.verdict == "fail")
        assert (r.reason is not None) == (r.verdict == "error")
    defect = next(r for r in results if r.defects).defects[0]
    assert defect.area > 0
    assert defect.bbox.width > 0
    assert defect.score is not None


async def test_simulate_keeps_to_the_rate(
    platform: Stack, nats_settings: NatsSettings, namespace: str, tmp_path: Path
) -> None:
    code, out = await _run(
        platform, namespace,
        "simulate", "--count", "100", "--rate", "200", "--spool", str(tmp_path / "s.sqlite3"),
    )  # fmt: skip
    assert code == 0, out
    elapsed = float(out.split(" results in ")[1].split(" s ")[0])
    assert elapsed >= 0.45  # 100 results at 200/s cannot take less (no upper bound: load)
    batches = await read_batches(nats_settings, namespace)
    assert sum(len(batch.results) for _, batch in batches) == 100


async def test_ctrl_c_flushes_before_exiting(
    platform: Stack, nats_settings: NatsSettings, namespace: str, tmp_path: Path
) -> None:
    e = platform.endpoints
    env = {
        **os.environ,
        "LOUPE_LINE_NATS_URL": e.nats_url,
        "LOUPE_LINE_NATS_USER": e.nats_user,
        "LOUPE_LINE_NATS_PASSWORD": e.nats_password,
        "LOUPE_LINE_NAMESPACE": namespace,
    }
    line = await asyncio.create_subprocess_exec(
        CLI, "simulate", "--count", "1000000", "--rate", "500",
        "--spool", str(tmp_path / "s.sqlite3"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    nc = await connect(nats_settings, "tests-line")
    try:
        js, stream = nc.jetstream(), stream_name("RESULTS", namespace)

        async def publishing() -> bool:
            return (await js.stream_info(stream)).state.messages > 0

        await until("the line publishes", publishing)
    finally:
        await nc.close()
    line.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(line.communicate(), timeout=30)
    assert await line.wait() == 130, out.decode()
    summary = out.decode().split("interrupted: ")[1]
    sent = int(summary.split(": ")[1].split(" results")[0])
    assert f"published  {sent}" in summary
    batches = await read_batches(nats_settings, namespace)
    assert sum(len(batch.results) for _, batch in batches) == sent


async def test_results_left_in_the_spool_are_reported_and_kept(tmp_path: Path) -> None:
    spool = tmp_path / "s.sqlite3"
    env = {
        **os.environ,
        "LOUPE_LINE_NATS_URL": f"nats://127.0.0.1:{free_port()}",  # nobody listens
        "LOUPE_LINE_CONNECT_TIMEOUT_S": "0.2",
    }
    args = ["simulate", "--count", "7", "--rate", "0", "--drain-timeout", "0.5"]
    process = await asyncio.create_subprocess_exec(
        CLI, *args, "--spool", str(spool),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert await process.wait() == 3, out.decode()
    assert "still in the spool" in out.decode()
    assert summarize(spool).items == 7
