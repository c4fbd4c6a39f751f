"""The gateway's read timeouts are configurable and an ordinary request passes a gateway with
short ones. Caddy's body timeouts do not cut a body reverse_proxy streams to a service (seen
with Caddy 2.11), so the services bound slow bodies themselves — a pause between two chunks
or a whole body too slow is a 408 (tests/kit/test_problems.py)."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loupe_stack import servers
from loupe_stack.processes import ManagedProcess, free_port, http_ok, wait_until
from loupe_stack.stack import Stack
from tests.conftest import auth

pytestmark = pytest.mark.e2e
IDLE_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def strict_gateway(platform: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second gateway on the session's services, with a short body idle timeout."""
    port = free_port()
    home: Path = tmp_path_factory.mktemp("strict-gateway")
    env = {
        **platform.gateway_env(),
        "LOUPE_GATEWAY_PORT": str(port),
        "LOUPE_GATEWAY_READ_IDLE_TIMEOUT": f"{IDLE_TIMEOUT_S}s",
    }
    process: ManagedProcess = servers.caddy(env, home, home, stop_timeout_s=5)
    process.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until("the strict gateway", lambda: http_ok(f"{url}/healthz"), process, 30)
        yield url
    finally:
        process.stop()


def test_ordinary_requests_pass_the_strict_gateway(strict_gateway: str, admin_token: str) -> None:
    answer = httpx.get(f"{strict_gateway}/api/services/catalog", headers=auth(admin_token))
    assert answer.status_code == 200
    created = httpx.post(
        f"{strict_gateway}/api/programs", headers=auth(admin_token), json={"name": 5}
    )
    assert created.status_code == 422
