"""Readiness reflects real dependencies; logs are JSON lines carrying the request id."""

import json
import re
import subprocess
import sys
import uuid

import httpx

from loupe_stack.processes import free_port, http_ok, wait_until
from loupe_stack.stack import Stack
from tests.conftest import auth
from tests.support import eventually


def test_readiness_names_the_dependency_that_fails(platform: Stack, tmp_path) -> None:
    """An images service pointed at a bucket that does not exist is alive but not ready."""
    port = free_port()
    env = {
        **platform.service_env("images"),
        "IMAGES_PORT": str(port),
        "IMAGES_IMAGES_BUCKET": "no-such-bucket",
    }
    log = (tmp_path / "images.log").open("w")
    with subprocess.Popen(
        [sys.executable, "-m", "loupe_images"], env=env, stdout=log, stderr=subprocess.STDOUT
    ) as proc:
        try:
            wait_until(
                "images /healthz", lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), None, 30
            )
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
            assert ready.status_code == 503
            body = ready.json()
            assert body["checks"]["object_store"]["ok"] is False
            assert "no-such-bucket" in body["checks"]["object_store"]["error"]
            assert body["checks"]["nats"]["ok"] is True
        finally:
            proc.terminate()
            # uvicorn drains, runs the shutdown of the app, then re-raises SIGTERM.
            try:
                code: int | None = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
            log.close()
    written = (tmp_path / "images.log").read_text()
    assert code in (0, -15), f"not stopped 20 s after SIGTERM; its log ends:\n{written[-3000:]}"
    assert "Application shutdown complete" in written


def test_every_service_logs_json_with_the_request_id(
    platform: Stack, gateway: httpx.Client, admin_token: str
) -> None:
    for service in ("catalog", "images", "backup", "inspect"):
        request_id = f"log-probe-{service}"
        gateway.get(
            f"/api/services/{service}", headers={**auth(admin_token), "X-Request-Id": request_id}
        )
        log = platform.log_dir / f"{service}.log"

        def logged(log=log, request_id=request_id, service=service) -> bool:
            for line in log.read_text().splitlines():
                if request_id in line:
                    entry = json.loads(line)
                    return bool(entry["request_id"] == request_id and entry["service"] == service)
            return False

        eventually(f"{service} logs {request_id}", logged, timeout_s=5)
    gateway_log = (platform.log_dir / "gateway.log").read_text()
    assert "log-probe-catalog" in gateway_log


# Lines C libraries the services load write straight to the process's stderr (libpng on a
# corrupt PNG, OpenCV's own logger): not the service's, and not JSON. Nothing else is excused.
_FOREIGN = re.compile(r"^(libpng (warning|error): |\[ ?(WARN|ERROR|INFO):\d)")
_FIELDS = {"event", "level", "timestamp", "service", "request_id"}


def test_every_log_line_is_json(platform: Stack, gateway: httpx.Client, admin_token: str) -> None:
    """Each service's own log lines are JSON objects with the expected fields, whatever ran
    before: the lines checked include ones this test makes it write."""
    for service in ("catalog", "images", "backup", "inspect"):
        request_id = f"json-probe-{service}-{uuid.uuid4().hex[:8]}"
        headers = {**auth(admin_token), "X-Request-Id": request_id}
        assert gateway.get(f"/api/services/{service}", headers=headers).status_code == 200
        log = platform.log_dir / f"{service}.log"

        def probed(log=log, request_id=request_id) -> bool:
            return request_id in log.read_text()

        eventually(f"{service} logs {request_id}", probed, timeout_s=5)
        entries = []
        for line in log.read_text().splitlines():
            if _FOREIGN.match(line):
                continue
            entry = json.loads(line)
            assert isinstance(entry, dict), f"{service}: {line}"
            assert entry.get("service") == service, f"{service}: {line}"
            entries.append(entry)
        mine = [e for e in entries if e.get("request_id") == request_id]
        assert mine, f"{service}: no line carries {request_id}"
        for entry in mine:
            assert entry.keys() >= _FIELDS, entry
        assert any(e["event"] == "http.request" and e.get("status") == 200 for e in mine), mine


_FAILING_APP = """
import asyncio, sys
import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from loupe_shared.kit.logging import configure_logging
from loupe_shared.kit.problems import install_problem_handlers
from loupe_shared.kit.requests import HttpMetrics, RequestContextMiddleware

configure_logging("probe")
app = FastAPI()
app.add_middleware(RequestContextMiddleware, metrics=HttpMetrics(CollectorRegistry()))
install_problem_handlers(app)

@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("kaboom")

async def main() -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        answer = await client.get("/boom", headers={"X-Request-Id": "probe-500"})
    print("ANSWER", answer.status_code, answer.headers.get("x-request-id"), answer.text,
          file=sys.stderr)

asyncio.run(main())
"""


def test_the_traceback_line_carries_the_request_id() -> None:
    """An unexpected failure is logged once, with its traceback and the request id, and
    answered as a 500 problem naming the same id."""
    done = subprocess.run(
        [sys.executable, "-c", _FAILING_APP], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    failed = [e for e in entries if e.get("event") == "request.failed"]
    assert len(failed) == 1, entries
    assert failed[0]["request_id"] == "probe-500"
    assert "RuntimeError: kaboom" in failed[0]["exception"]
    assert all(e.get("request_id") == "probe-500" for e in entries), entries
    answer = done.stderr.split("ANSWER ", 1)[1]
    status, header_id, body = answer.split(" ", 2)
    assert (status, header_id) == ("500", "probe-500")
    problem = json.loads(body)
    assert problem["request_id"] == "probe-500"
    assert "kaboom" not in body
