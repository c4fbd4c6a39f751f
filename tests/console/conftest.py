"""The console's browser tests: the app built from `console/` (and `@loupe/client` under
it), served by the session's gateway at /console/, driven in Debian's Chromium by Playwright
(never a downloaded browser), signed in with tokens of each role."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page

from loupe_shared.kit.auth import Role
from loupe_stack import console
from loupe_stack.config import CONSOLE_DIST
from loupe_stack.stack import Stack
from tests.client.helpers import SCREENSHOTS, chromium
from tests.conftest import TokenMaker
from tests.support import off_loop, once_per_run

SHOTS = SCREENSHOTS / "console"


@pytest.fixture(scope="session")
def console_dist(platform: Stack) -> Path:
    """The console built into the folder the platform's gateway serves."""
    once_per_run("frontend", console.build)  # the client and the console
    built = CONSOLE_DIST
    assert (built / "index.html").is_file()
    assert built.resolve() == platform.settings.console_dir.resolve()
    return built


@pytest.fixture(scope="module")
def browser(platform: Stack, console_dist: Path) -> Iterator[Browser]:
    """Chromium, started after the platform (whose start-up uses `asyncio.run`), for one
    module: while Playwright's sync API runs, its event loop counts as running on this
    thread, and a later `asyncio.run` of the session (other folders' fixtures) would fail."""
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="session")
def tokens(make_token: TokenMaker, platform: Stack) -> dict[Role, str]:
    """A token per role (made once, off Playwright's event loop)."""
    return {role: off_loop(make_token, role, f"console-{role}") for role in Role}


class Console:
    """A tab on the console, with the errors it logged (CSP violations included)."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.errors.append(message.text)

    def sign_in(self, token: str, where: str = "") -> None:
        self.page.goto(self.url + (f"#/{where}" if where else ""))
        self.page.get_by_label("Access token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("navigation", name="Pages").wait_for()

    def open(self, where: str) -> None:
        self.page.goto(f"{self.url}#/{where}")

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def tab(context: BrowserContext, platform: Stack) -> Iterator[Callable[[], Console]]:
    """Opens console tabs in the test's context; none may log an error."""
    opened: list[Console] = []

    def new() -> Console:
        made = Console(context.new_page(), platform.console_url)
        opened.append(made)
        return made

    yield new
    for made in opened:
        assert made.errors == [], made.errors


@pytest.fixture
def ui(tab: Callable[[], Console]) -> Console:
    return tab()
