"""Helpers shared by the tests."""

import asyncio
import contextlib
import fcntl
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import psutil

from loupe_stack.processes import free_port, port_in_use

ROOT = Path(__file__).resolve().parents[1]
PORT_SETTINGS = (
    "GATEWAY_PORT",
    "PG_PORT",
    "NATS_PORT",
    "NATS_MONITOR_PORT",
    "S3_PORT",
    "WEED_MASTER_PORT",
    "WEED_VOLUME_PORT",
    "WEED_FILER_PORT",
    "CATALOG_PORT",
    "IMAGES_PORT",
    "BACKUP_PORT",
    "INSPECT_PORT",
)
# The ports cluster mode adds.
CLUSTER_PORT_SETTINGS = (
    "NATS_PORT_2",
    "NATS_PORT_3",
    "NATS_MONITOR_PORT_2",
    "NATS_MONITOR_PORT_3",
    "NATS_ROUTE_PORT",
    "NATS_ROUTE_PORT_2",
    "NATS_ROUTE_PORT_3",
    "WEED_VOLUME_PORT_2",
    "CATALOG_PORT_2",
    "IMAGES_PORT_2",
    "BACKUP_PORT_2",
    "INSPECT_PORT_2",
    "INGESTER_METRICS_PORT",
    "INGESTER_METRICS_PORT_2",
)


def free_stack_ports(cluster: bool = False) -> dict[str, int]:
    """Free loopback ports for every stack setting (and those of cluster mode); SeaweedFS
    also needs port + 10000."""
    chosen: dict[str, int] = {}
    taken: set[int] = set()
    for name in (*PORT_SETTINGS, *(CLUSTER_PORT_SETTINGS if cluster else ())):
        while True:
            port = free_port()
            if port in taken:
                continue
            if name.startswith(("S3", "WEED")) and (
                port + 10000 in taken or port_in_use(port + 10000)
            ):
                continue
            break
        taken.update({port, port + 10000})
        chosen[name] = port
    return chosen


def eventually(what: str, condition: Callable[[], bool], timeout_s: float = 15.0) -> float:
    """Poll until `condition` holds; answers the seconds it took. For effects that are
    asynchronous by design (a revocation reaching every service), not for readiness."""
    started = time.monotonic()
    delay = 0.05
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not true after {timeout_s} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    return time.monotonic() - started


class Runner:
    """`loupe run` as a child process, as a person would start it with `make run`."""

    def __init__(
        self, data_dir: Path, ports: dict[str, int], extra_env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.ports = ports
        self.env = {
            **os.environ,
            "LOUPE_DATA_DIR": str(data_dir),
            **{f"LOUPE_{name}": str(port) for name, port in ports.items()},
            **(extra_env or {}),
        }
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "loupe_stack", "run"],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.lines.put(line)

    def wait_for(self, text: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.process is not None
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.output.append(line)
            if text in line:
                return
        raise AssertionError(f"never printed {text!r}; output:\n{''.join(self.output)}")

    def drain(self) -> str:
        while True:
            try:
                self.output.append(self.lines.get_nowait())
            except queue.Empty:
                return "".join(self.output)

    def descendants(self) -> list[psutil.Process]:
        assert self.process is not None
        return psutil.Process(self.process.pid).children(recursive=True)

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout_s: float = 90.0) -> int:
        assert self.process is not None
        code = self.process.wait(timeout_s)
        self._pump_thread.join(timeout_s)
        return code

    def token(self) -> str:
        import json

        return str(json.loads((self.data_dir / "credentials.json").read_text())["admin_token"])

    def kill_all(self) -> None:
        """Last-resort cleanup for a failed test."""
        if self.process is None or self.process.poll() is not None:
            return
        for child in self.descendants():
            child.kill()
        self.process.kill()
        self.wait()


class CuttableProxy:
    """A TCP proxy on loopback whose link can be cut and restored, to take a server away
    from one client without stopping the server."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Drop every open connection; new ones are closed as soon as they arrive."""
        self._cut.set()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)


T = TypeVar("T")


def off_loop(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `call` on a thread of its own. Playwright's sync API keeps an event loop running on
    the test's thread while a browser is open, so helpers that use `asyncio.run` (tokens,
    publishing) must run elsewhere. Never a process start: a child started on a thread that
    ends is killed with it (`PR_SET_PDEATHSIG` follows the thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call, *args, **kwargs).result()


def once_per_run(name: str, make: Callable[[], object]) -> None:
    """Run `make` once per test run however many pytest-xdist workers ask for it (a build
    into the checkout that every worker reads): the first to ask makes it under a lock, the
    others wait for the lock and find the run's stamp. Without xdist it is simply run."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")
    folder = ROOT / ".cache" / "once-per-run"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / f"{name}.run"
    with (folder / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if run and stamp.is_file() and stamp.read_text() == run:
            return
        stamp.unlink(missing_ok=True)
        make()
        if run:
            stamp.write_text(run)


async def until(
    what: str, condition: Callable[[], bool | Awaitable[bool]], timeout_s: float = 15.0
) -> float:
    """`eventually` for async tests: polls (a plain or async condition) without blocking the
    loop the client under test runs on."""
    started = time.monotonic()
    delay = 0.01
    while True:
        holds = condition()
        if not isinstance(holds, bool):
            holds = await holds
        if holds:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not true after {timeout_s} s")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.2)
