"""Backup → verify → restore dry run → restore → the data back, through the console, on a
whole installation of this module's own: a restore replaces everything an installation holds,
so it cannot be the session's, whose other tests leave behind what a restore rightly refuses
(image records of blobs they never stored fail its health check)."""

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from loupe_stack.config import StackSettings
from loupe_stack.stack import Stack
from tests.catalog.helpers import config_v3
from tests.conftest import auth
from tests.console.conftest import Console
from tests.support import free_stack_ports

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def installation(console_dist: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of the module's own, serving the built console; started before the module's
    browser (its start-up uses `asyncio.run`)."""
    base = tmp_path_factory.mktemp("console-restore")
    ports = free_stack_ports()
    settings = StackSettings.model_validate(
        {
            "data_dir": base / "data",
            **{name.lower(): port for name, port in ports.items()},
            "stop_timeout_s": 10,
        }
    )
    stack = Stack(settings)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def _program(gateway: httpx.Client, token: str, name: str) -> dict[str, Any]:
    body = {"name": name, "description": "", "tags": [], "config": config_v3()}
    created = gateway.post("/api/programs", json=body, headers=auth(token))
    assert created.status_code == 201, created.text
    program: dict[str, Any] = created.json()
    return program


def test_backup_verify_dry_run_restore_and_the_data_back(
    installation: Stack, browser: Browser, context: BrowserContext
) -> None:
    with httpx.Client(base_url=installation.gateway_url, timeout=30) as gateway:
        _backup_and_restore(
            installation, gateway, Console(context.new_page(), installation.console_url)
        )


def _backup_and_restore(installation: Stack, gateway: httpx.Client, ui: Console) -> None:
    admin = installation.admin_token
    kept = _program(gateway, admin, f"Survives restore {uuid.uuid4().hex[:6]}")
    ui.sign_in(admin, "backups")
    ui.page.get_by_role("button", name="Create backup").click()
    # The notice, not the list's loading skeleton (a status too).
    notice = ui.page.get_by_test_id("backups-notice")
    expect(notice).to_contain_text("started")
    backup_id = notice.inner_text().split()[1]
    row = ui.page.get_by_role("row").filter(has_text=backup_id)
    expect(row.get_by_role("button", name="Verify")).to_be_visible(timeout=60_000)
    ui.shot("backups")
    row.get_by_role("button", name="Verify").click()
    expect(notice).to_contain_text("verified", timeout=60_000)
    # Lost after the backup; the restore brings it back.
    etag = gateway.get(f"/api/programs/{kept['id']}", headers=auth(admin)).headers["etag"]
    deleted = gateway.post(
        f"/api/programs/{kept['id']}/archive", headers={**auth(admin), "If-Match": etag}
    )
    assert deleted.status_code in (200, 204), deleted.text
    row.get_by_role("link", name="Restore…").click()
    ui.page.get_by_role("button", name="Run the dry run").click()
    expect(ui.page.get_by_role("region", name="Dry-run report")).to_be_visible()
    # The plan's warnings as the text they are (they were shown as JSON, in quotes).
    expect(ui.page.get_by_test_id("restore-warning").first).to_have_text(
        re.compile(r'^Warning: [^"].*[^"]$')
    )
    confirm = ui.page.get_by_role("button", name="Restore now")
    expect(confirm).to_be_disabled()
    ui.page.get_by_label("Type the set's id to confirm").fill(backup_id)
    ui.shot("restore-dry-run")
    confirm.click()
    expect(ui.page.get_by_test_id("restore-status")).to_have_text("completed", timeout=120_000)
    ui.shot("restore-done")
    back = gateway.get(f"/api/programs/{kept['id']}", headers=auth(admin))
    assert back.status_code == 200
    assert back.json()["archived"] is False
    assert ui.errors == [], ui.errors
