"""The browser tests of `@loupe/client`: the package built from `clients/ts`, a page of the
tests' own serving its browser bundle from a second origin (as the frontend does), and
Debian's Chromium driven by Playwright (never a downloaded browser)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from loupe_stack import console
from loupe_stack.stack import Stack
from tests.client.helpers import PACKAGE, SCREENSHOTS, chromium, serve_page
from tests.support import once_per_run


@pytest.fixture(scope="session")
def client_package() -> Path:
    """The package installed and built: `dist/` with the browser bundle. Built with the
    console, which builds it first, once per run (both are read while other tests run)."""
    once_per_run("frontend", console.build)
    bundle = PACKAGE / "dist" / "browser" / "loupe-client.js"
    assert bundle.is_file()
    return PACKAGE


@pytest.fixture(scope="session")
def frontend(client_package: Path, frontend_port: int) -> Iterator[str]:
    """The test page and the bundle, served on the origin the gateway lets call it."""
    with serve_page(client_package / "dist" / "browser" / "loupe-client.js", frontend_port) as url:
        yield url


@pytest.fixture(scope="module")
def browser(platform: Stack) -> Iterator[Browser]:
    """Chromium, started after the platform (whose start-up uses `asyncio.run`), for one
    module: while Playwright's sync API runs, its event loop counts as running on this thread,
    and every later `asyncio.run` of the session (other folders' fixtures) would fail."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def page(
    context: BrowserContext, frontend: str, platform: Stack, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """The test page with `window.Loupe` (the bundle's exports) and `window.gatewayUrl`."""
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(f"{frontend}/index.html?gateway={platform.gateway_url}")
    opened.wait_for_function("window.Loupe !== undefined", timeout=15_000)
    try:
        yield opened
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        opened.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"))
        assert errors == [], errors
