"""Ports: what `loupe run` accepts (1-65535, one clear line otherwise), and what the servers
tests start get: below the kernel's ephemeral range (where an outgoing connection could take
a port between its pick and the bind), with room for SeaweedFS's port + 10000, and a block of
their own for each pytest-xdist worker."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from loupe_catalog.settings import CatalogSettings
from loupe_stack.config import INGESTER_METRICS, StackSettings
from loupe_stack.processes import free_port


def _ephemeral_low() -> int:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        return int(f.read().split()[0])


@pytest.mark.parametrize(("worker", "count"), [("gw0", "2"), ("gw1", "2"), ("", "1")])
def test_picked_ports_are_free_and_outside_the_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch, worker: str, count: str
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", count)
    picked = {free_port() for _ in range(50)}
    assert len(picked) > 40  # random within the block, not one port again and again
    for port in picked:
        assert port + 10000 < _ephemeral_low()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))  # free when picked (nothing else binds here)


def test_two_workers_pick_from_blocks_that_do_not_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    blocks = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        picked = [free_port() for _ in range(200)]
        blocks.append((min(picked), max(picked)))
    (low0, high0), (low1, high1) = blocks
    assert high0 < low1 or high1 < low0, blocks


@pytest.mark.parametrize("value", ["0", "-1", "65536", "99999999999999999999", "8080\0"])
def test_a_stack_port_out_of_range_is_refused_by_name(value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        StackSettings.model_validate({"ingester_metrics_port_2": value})
    assert refused.value.errors()[0]["loc"] == ("ingester_metrics_port_2",)
    assert (
        StackSettings.model_validate({"ingester_metrics_port_2": "65535"}).port_of(
            INGESTER_METRICS, 2
        )
        == 65535
    )


@pytest.mark.parametrize(
    ("value", "ok"), [("0", True), ("65535", True), ("65536", False), ("-1", False)]
)
def test_the_ingester_metrics_port_is_bounded(value: str, ok: bool) -> None:
    if ok:
        assert CatalogSettings.model_validate(
            {"ingest_metrics_port": value}
        ).ingest_metrics_port == int(value)
    else:
        with pytest.raises(ValidationError):
            CatalogSettings.model_validate({"ingest_metrics_port": value})


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        (
            "LOUPE_GATEWAY_PORT",
            "70000",
            "error: LOUPE_GATEWAY_PORT: Input should be less than or equal to 65535",
        ),
        ("LOUPE_CATALOG_PORT", "abc", "error: LOUPE_CATALOG_PORT: Input should be a valid integer"),
        (
            "LOUPE_WEED_MASTER_PORT",
            "60000",
            "error: port 70000 does not exist (SeaweedFS master gRPC",
        ),
    ],
)
def test_loupe_run_refuses_a_bad_port_in_one_line_and_starts_nothing(
    tmp_path: Path, setting: str, value: str, said: str
) -> None:
    env = {**os.environ, "LOUPE_DATA_DIR": str(tmp_path / "data"), setting: value}
    done = subprocess.run(
        [sys.executable, "-m", "loupe_stack", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(said), lines
    assert not (tmp_path / "data" / "postgres").exists()
