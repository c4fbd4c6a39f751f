"""Ports for the servers tests start: below the kernel's ephemeral range (where an outgoing
connection could take a port between its pick and the bind), with room for SeaweedFS's
port + 10000, and a block of their own for each pytest-xdist worker."""

import socket

import pytest

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
