"""Child processes the stack starts, watches and stops."""

import ctypes
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


class StackError(Exception):
    """The stack cannot start or keep running; the message is meant for the person at the
    terminal."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec (after any change of user): when the runner
    # dies, even by SIGKILL, the kernel sends SIGKILL to the child, so none is left behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        popen_kwargs: Mapping[str, Any] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout_s: float = 15.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.popen_kwargs = dict(popen_kwargs or {})
        self.stop_signal = stop_signal
        self.stop_timeout_s = stop_timeout_s
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                **self.popen_kwargs,
                # Own session: Ctrl-C at the terminal reaches only the runner, which then
                # stops the children in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> int | None:
        """Signal, wait up to the timeout, then kill. Answers the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(self.stop_signal)
                self.popen.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


# Ports for servers the tests and benchmarks start, picked below the kernel's ephemeral
# range (32768-60999 on Linux): a port picked there could be taken by any outgoing connection
# between the pick and the server's bind. SeaweedFS also binds port + 10000, hence the top.
_PORTS_LOW, _PORTS_HIGH = 10_000, 22_767
_pick = random.Random()  # its own generator: a test seeding `random` changes nothing here


def _port_block() -> tuple[int, int]:
    """The block of ports this process picks from: its pytest-xdist worker's own, so two
    workers starting servers side by side never pick the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
    index = int(worker[2:]) % count if worker.startswith("gw") and worker[2:].isdigit() else 0
    span = (_PORTS_HIGH - _PORTS_LOW + 1) // count
    low = _PORTS_LOW + index * span
    return low, low + span - 1


def free_port() -> int:
    """A loopback port nothing listens on, for a server the tests or benchmarks start."""
    low, high = _port_block()
    for _ in range(1000):
        port = _pick.randint(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise StackError(f"no free port between {low} and {high}")


def wait_until(
    what: str,
    probe: Callable[[], bool],
    process: ManagedProcess | None,
    timeout_s: float,
) -> None:
    """Poll `probe` until it answers True; fail fast when the process exits."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        if process is not None and not process.running():
            raise StackError(
                f"{process.name} exited with code {process.exit_code()} while starting; "
                f"its log ({process.log_path}) ends with:\n{process.log_tail()}"
            )
        try:
            if probe():
                return
        except Exception:  # noqa: S110 - not ready yet: try again
            pass
        if time.monotonic() > deadline:
            tail = f"\n{process.log_tail()}" if process is not None else ""
            raise StackError(f"{what} was not ready within {timeout_s:g} s{tail}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def http_ok(url: str, headers: Mapping[str, str] | None = None) -> bool:
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            return bool(200 <= response.status < 300)
    except urllib.error.HTTPError:
        return False


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0
