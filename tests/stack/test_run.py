"""`make run` as a person uses it: ready, reachable, stopped by Ctrl-C or SIGTERM with nothing
left behind, data kept across restarts, a clear line for a port in use."""

import contextlib
import io
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from minio import Minio

from loupe_stack.processes import port_in_use
from tests.support import ROOT, Runner, free_stack_ports

pytestmark = pytest.mark.slow


def _gateway(runner: Runner) -> str:
    return f"http://127.0.0.1:{runner.ports['GATEWAY_PORT']}"


def _assert_nothing_left(pids: list[int], ports: dict[str, int]) -> None:
    alive = [
        pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    ]
    assert alive == [], f"processes left behind: {alive}"
    held = [port for port in ports.values() if port_in_use(port)]
    assert held == [], f"ports still held: {held}"


def test_ctrl_c_stops_everything_and_data_survives_a_restart(tmp_path: Path) -> None:
    ports = free_stack_ports()
    first = Runner(tmp_path / "data", ports)
    first.start()
    try:
        first.wait_for("Press Ctrl-C")
        token = first.token()
        output = first.drain()
        assert token in output
        assert _gateway(first) in output
        with httpx.Client(base_url=_gateway(first)) as client:
            for service in ("catalog", "images", "backup", "inspect"):
                reached = client.get(
                    f"/api/services/{service}", headers={"Authorization": f"Bearer {token}"}
                )
                assert reached.status_code == 200, service
                assert client.get(f"/api/services/{service}").status_code == 401
        # Leave data behind in each server: a token (NATS), an object (S3), the schema (PostgreSQL).
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "loupe_stack",
                "tokens",
                "create",
                "--name",
                "kept",
                "--role",
                "viewer",
                "-q",
            ],
            env=first.env,
            capture_output=True,
            text=True,
            check=True,
        )
        viewer = created.stdout.strip()
        creds = __import__("json").loads((tmp_path / "data" / "credentials.json").read_text())
        s3 = Minio(
            f"127.0.0.1:{ports['S3_PORT']}",
            access_key=creds["s3_access_key"],
            secret_key=creds["s3_secret_key"],
            secure=False,
        )
        s3.put_object("loupe-images", "kept/object", io.BytesIO(b"survives"), 8)
        pids = [p.pid for p in first.descendants()]
        assert len(pids) >= 8  # 4 servers + 4 services (+ their children)
        first.signal(signal.SIGINT)
        assert first.wait() == 0
        assert "stopped; data kept" in first.drain()
        _assert_nothing_left(pids, ports)
    finally:
        first.kill_all()

    second = Runner(tmp_path / "data", ports)
    second.start()
    try:
        second.wait_for("Press Ctrl-C")
        assert second.token() == token
        with httpx.Client(base_url=_gateway(second)) as client:
            kept = client.get(
                "/api/services/catalog", headers={"Authorization": f"Bearer {viewer}"}
            )
            assert kept.status_code == 200
            schema = client.get("/api/schema", headers={"Authorization": f"Bearer {token}"})
            assert schema.json()["up_to_date"] is True
        assert s3.get_object("loupe-images", "kept/object").read() == b"survives"
        pids = [p.pid for p in second.descendants()]
        second.signal(signal.SIGTERM)
        assert second.wait() == 0
        _assert_nothing_left(pids, ports)
    finally:
        second.kill_all()


def test_killing_the_runner_outright_leaves_no_children(tmp_path: Path) -> None:
    ports = free_stack_ports()
    runner = Runner(tmp_path / "data", ports)
    runner.start()
    try:
        runner.wait_for("Press Ctrl-C")
        pids = [p.pid for p in runner.descendants()]
        runner.signal(signal.SIGKILL)
        runner.wait()
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).wait(timeout=15)
        _assert_nothing_left(pids, ports)
    finally:
        runner.kill_all()


def test_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    ports = free_stack_ports()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports["GATEWAY_PORT"]))
        blocker.listen()
        runner = Runner(tmp_path / "data", ports)
        runner.start()
        try:
            assert runner.wait(timeout_s=60) == 2
        finally:
            runner.kill_all()
    lines = [line for line in runner.drain().splitlines() if line.strip()]
    assert lines == [
        f"error: port {ports['GATEWAY_PORT']} is already in use (gateway); "
        "set LOUPE_GATEWAY_PORT to a free port"
    ]
    assert not (tmp_path / "data" / "postgres").exists()  # nothing was started


def test_make_run_is_what_the_readme_shows_first() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == [
        "make run",
        "make test",
    ]
    makefile = (ROOT / "Makefile").read_text()
    # `make run` builds the console (Node.js from the project's wheel), then runs the stack.
    assert "\nrun: $(STAMP)\n\t$(BIN)/python -m loupe_stack.console\n\t$(BIN)/loupe run" in makefile
    assert (ROOT / ".ci" / "run").read_text().count("make test") == 1
