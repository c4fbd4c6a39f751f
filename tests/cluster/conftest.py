"""One installation in cluster mode for these tests: three NATS nodes with every stream at 3
replicas, two processes of each service behind the gateway, two result ingesters, two
SeaweedFS volume servers. The tests kill its parts with SIGKILL and count what survived."""

import json
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from loupe_stack.config import StackSettings
from loupe_stack.processes import ManagedProcess
from loupe_stack.stack import Stack
from tests.support import free_stack_ports


@pytest.fixture(scope="package")
def cluster() -> Iterator[Stack]:
    base = Path(tempfile.mkdtemp(prefix="loupe-cluster-"))
    settings = StackSettings.model_validate(
        {
            "data_dir": base / "data",
            "cluster": True,
            **{name.lower(): port for name, port in free_stack_ports(cluster=True).items()},
            "stop_timeout_s": 10,
            "log_level": "warning",
        }
    )
    # A dead worker's requests go to another once their ack wait (time limit plus slack)
    # passed, a dead backup process's set is marked failed once its lease expired: short
    # ones keep the tests short (their images take milliseconds).
    stack = Stack(
        settings,
        service_extra_env={
            "inspect": {"TIME_LIMIT_S": "5", "ACK_SLACK_S": "5"},
            "backup": {"LEASE_TTL_S": "5"},
        },
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def stream_leader(stack: Stack, stream: str) -> ManagedProcess:
    """The NATS node that leads `stream` (the one whose loss costs an election)."""
    monitor = stack.settings.nats_nodes()[0][1]
    with urllib.request.urlopen(
        f"http://127.0.0.1:{monitor}/jsz?streams=true", timeout=5
    ) as answer:
        report = json.load(answer)
    for account in report.get("account_details", []):
        for detail in account.get("stream_detail", []):
            if detail["name"] == stream:
                node = int(detail["cluster"]["leader"].rsplit("-", 1)[1])
                return stack.nats_nodes[node - 1]
    raise AssertionError(f"stream {stream} not found")


def wait_nats_node(stack: Stack, process: ManagedProcess) -> None:
    node = stack.nats_nodes.index(process)
    stack.wait_nats(process, stack.settings.nats_nodes()[node][1])
