"""The console's shell: served at /console/ under its own policy, sign-in with a pasted
token, navigation by role, errors with their detail and request id, no fetch but the client's."""

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, expect

from loupe_shared.kit.auth import Role
from loupe_stack.stack import Stack
from tests.console.conftest import SHOTS, Console

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_no_fetch_in_the_console_but_the_clients() -> None:
    sources = [p for p in (ROOT / "console" / "src").rglob("*") if p.suffix in {".ts", ".svelte"}]
    assert sources
    call = re.compile(r"(?<![.\w])fetch\s*\(|window\.fetch")
    calls = [str(p) for p in sources if call.search(p.read_text())]
    assert calls == [], f"call the API through @loupe/client only: {calls}"


def test_the_gateway_serves_the_built_console_under_its_policy(
    console_dist: Path, gateway: httpx.Client
) -> None:
    page = gateway.get("/console/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "img-src 'self' blob: data:" in csp
    assert "unsafe-inline" not in csp
    assert re.search(r"<script>|<script\s+type=\"module\">", page.text) is None, "inline script"
    deep = gateway.get("/console/programs/x")
    assert deep.status_code == 200
    assert deep.text == page.text
    asset = re.search(r'src="(/console/assets/[^"]+\.js)"', page.text)
    assert asset, page.text
    js = gateway.get(asset.group(1))
    assert js.status_code == 200
    assert "immutable" in js.headers["cache-control"]
    assert gateway.get("/console").status_code == 308


@pytest.mark.parametrize("service", ["catalog", "images", "backup", "inspect"])
def test_the_api_docs_render_with_nothing_loaded_from_elsewhere(
    context: BrowserContext, platform: Stack, service: str
) -> None:
    """Operators read `/docs/<svc>` on factory networks that reach no CDN: Swagger UI's files
    come from the service through the gateway, and its policy allows nothing else."""
    page = context.new_page()
    requested: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{platform.gateway_url}/docs/{service}")
    expect(page.locator(".swagger-ui .info .title")).to_be_visible(timeout=15_000)
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    elsewhere = [url for url in requested if not url.startswith((platform.gateway_url, "data:"))]
    assert elsewhere == []
    assert errors == []
    if service == "catalog":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "api-docs-catalog.png"), full_page=False)
    page.close()


def test_a_wrong_token_shows_the_problem_and_its_request_id(ui: Console) -> None:
    ui.page.goto(ui.url)
    ui.page.get_by_label("Access token").fill("loupe_not-a-real-token")
    ui.page.get_by_role("button", name="Sign in").click()
    alert = ui.page.get_by_role("alert")
    expect(alert).to_contain_text("401")
    expect(alert).to_contain_text("Request id")
    ui.shot("signin-refused")
    ui.errors.clear()  # the refused request itself is logged by the browser


def test_sign_in_navigate_and_sign_out(ui: Console, tokens: dict[Role, str]) -> None:
    ui.page.goto(ui.url)
    ui.shot("signin")
    ui.sign_in(tokens[Role.ADMIN])
    nav = ui.page.get_by_role("navigation", name="Pages")
    for label in ("Lines", "Programs", "Backups", "Restore", "Migration", "Health", "Audit"):
        expect(nav.get_by_role("link", name=label, exact=True)).to_be_visible()
    nav.get_by_role("link", name="Health").click()
    expect(ui.page.get_by_role("heading", name="Health")).to_be_visible()
    expect(ui.page.get_by_role("table", name="Services")).to_contain_text("catalog")
    services = ui.page.get_by_role("table", name="Services")
    expect(services.get_by_text("ready", exact=True)).to_have_count(4)
    ui.shot("health")
    # The token stays with the tab: a reload keeps the session.
    ui.page.reload()
    expect(ui.page.get_by_role("heading", name="Health")).to_be_visible()
    ui.page.get_by_role("button", name="Sign out").click()
    expect(ui.page.get_by_label("Access token")).to_be_visible()


def test_a_viewer_sees_only_what_a_viewer_may_do(ui: Console, tokens: dict[Role, str]) -> None:
    ui.sign_in(tokens[Role.VIEWER], "programs")
    nav = ui.page.get_by_role("navigation", name="Pages")
    expect(nav.get_by_role("link", name="Programs")).to_be_visible()
    for hidden in ("Backups", "Restore", "Migration", "Audit", "Storage", "Try"):
        expect(nav.get_by_role("link", name=hidden, exact=True)).to_have_count(0)
    expect(ui.page.get_by_role("heading", name="Programs")).to_be_visible()
    expect(ui.page.get_by_role("link", name="New program")).to_have_count(0)
    ui.open("backups")
    expect(ui.page.get_by_text("may not open this page")).to_be_visible()
    ui.shot("viewer-refused-page")
