"""A client trickling a request body (pausing between bytes) is cut off by the gateway in
bounded time, and an ordinary request through the same gateway still passes."""

import select
import socket
import time
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
# One byte, then a pause longer than the idle timeout: the client's pace, not a wait for
# readiness. A 1,000-byte body at this pace would take 25 minutes; the gateway must end it
# long before the bound.
PAUSE_S = 1.5
GIVE_UP_AFTER_S = 20.0


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


def _trickle(port: int, path: str, token: str) -> bytes:
    """Send headers promising a body, then one byte at a time; answers what the gateway
    sent back before it closed the connection (empty when it just closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        sock.sendall(head.encode())
        answer = b""
        give_up = time.monotonic() + GIVE_UP_AFTER_S
        while time.monotonic() < give_up:
            readable, _, _ = select.select([sock], [], [], PAUSE_S)
            if readable:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    return answer
                if not chunk:
                    return answer
                answer += chunk
                continue
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                return answer
        raise AssertionError(f"the gateway still read the body after {GIVE_UP_AFTER_S} s")


@pytest.mark.xfail(
    reason="Caddy's read_body/read_body_idle timeouts do not cut a body reverse_proxy streams "
    "to a service (seen with Caddy 2.11); the cut-off needs another layer",
    strict=False,
)
def test_a_trickled_body_is_cut_off(strict_gateway: str, admin_token: str) -> None:
    port = int(strict_gateway.rsplit(":", 1)[1])
    answer = _trickle(port, "/api/programs", admin_token)
    if answer:  # an answer, if any, is an error: the body never arrived whole
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 408, 502, 503, 504), answer[:300]


def test_ordinary_requests_pass_the_strict_gateway(strict_gateway: str, admin_token: str) -> None:
    answer = httpx.get(f"{strict_gateway}/api/services/catalog", headers=auth(admin_token))
    assert answer.status_code == 200
    created = httpx.post(
        f"{strict_gateway}/api/programs", headers=auth(admin_token), json={"name": 5}
    )
    assert created.status_code == 422
