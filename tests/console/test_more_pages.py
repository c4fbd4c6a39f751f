"""The console's analysis and operations pages on real data — Yield, Defects (and its
drill-down), Result, Audit, Storage, Schedules & retention, Tokens — and the cross-cutting
flows: a result from `loupe-line simulate` on the Lines page, keyboard-only navigation, and
axe-core on every page."""

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, expect

from loupe_shared.kit.auth import Role
from loupe_stack.stack import Stack
from tests.catalog.helpers import config_v3
from tests.conftest import TokenMaker, auth
from tests.console.conftest import Console
from tests.support import eventually, off_loop

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "console" / "node_modules" / "axe-core" / "axe.min.js"
LINE_CLI = str(Path(sys.executable).parent / "loupe-line")


def _png(seed: int, size: int = 160) -> bytes:
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 200, dtype=np.uint8)
    image[20:140, 20:140] = rng.integers(60, 120, (120, 120, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return bytes(encoded.tobytes())


def _upload(gateway: httpx.Client, token: str, seed: int) -> str:
    answer = gateway.post("/api/images", content=_png(seed), headers=auth(token))
    assert answer.status_code in (200, 201), answer.text
    sha = str(answer.json()["sha256"])
    eventually(
        "the catalog's image record",
        lambda: gateway.get(f"/api/image-records/{sha}", headers=auth(token)).status_code == 200,
        timeout_s=15,
    )
    return sha


def _result(line: str, verdict: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "result_id": str(uuid.uuid4()),
        "line_id": line,
        "verdict": verdict,
        "captured_at": at.isoformat(),
        "station": "S1",
        "part_id": f"{line}-{uuid.uuid4().hex[:6]}",
        **extra,
    }


class Seeded:
    def __init__(self, line: str, program: dict[str, Any], failing: dict[str, Any]) -> None:
        self.line = line
        self.program = program
        self.failing = failing


@pytest.fixture(scope="module")
def seeded(
    platform: Stack, gateway: httpx.Client, make_token: TokenMaker, tokens: dict[Role, str]
) -> Seeded:
    """A program with a master and a second revision, and a line with 2 days of results
    (passes, fails with defects of two kinds, errors) recorded through the API."""
    admin = tokens[Role.ADMIN]
    line = f"console-{uuid.uuid4().hex[:6]}"
    master = _upload(gateway, admin, 1)
    capture = _upload(gateway, admin, 2)
    made = gateway.post(
        "/api/programs",
        json={
            "name": f"Yield {line}",
            "description": "console tests",
            "tags": ["console"],
            "config": config_v3(),
            "master_image_sha256": master,
        },
        headers=auth(admin),
    )
    assert made.status_code == 201, made.text
    program = made.json()
    etag = gateway.get(f"/api/programs/{program['id']}", headers=auth(admin)).headers["etag"]
    edited = gateway.put(
        f"/api/programs/{program['id']}",
        json={**{k: program[k] for k in ("name", "tags", "config")}, "description": "rev 2",
              "master_image_sha256": master},
        headers={**auth(admin), "If-Match": etag},
    )  # fmt: skip
    assert edited.status_code == 200, edited.text
    line_token = off_loop(make_token, Role.LINE, line)
    now = datetime.now(UTC)
    results: list[dict[str, Any]] = []
    ref = {"program_id": program["id"], "program_revision": 2}
    for hour in range(36):
        at = now - timedelta(hours=hour, minutes=5)
        fails = 6 if hour == 3 else 1 + hour % 2
        for i in range(20):
            if i < fails:
                kind = "scratch" if i % 3 else "dent"
                defect = {"kind": kind, "tool_id": f"tool-{i % 2}", "area": 120.0,
                          "bbox": {"x": 30 + 10 * i, "y": 40, "width": 40, "height": 25},
                          "score": 0.8}  # fmt: skip
                results.append(
                    _result(line, "fail", at, defects=[defect], capture_sha256=capture, **ref)
                )
            elif i == 19 and hour % 5 == 0:
                results.append(_result(line, "error", at, reason="camera timeout", **ref))
            else:
                results.append(_result(line, "pass", at, capture_sha256=capture, **ref))
    for start in range(0, len(results), 200):
        sent = gateway.post(
            "/api/results", json={"results": results[start : start + 200]},
            headers=auth(line_token),
        )  # fmt: skip
        assert sent.status_code == 202, sent.text
    failing = next(
        r
        for r in results
        if r["verdict"] == "fail" and r["captured_at"] > (now - timedelta(hours=1)).isoformat()
    )
    eventually(
        "the results stored",
        lambda: (
            gateway.get(f"/api/results/{results[-1]['result_id']}", headers=auth(admin)).status_code
            == 200
            and gateway.get(f"/api/results/{failing['result_id']}", headers=auth(admin)).status_code
            == 200
        ),
        timeout_s=30,
    )
    return Seeded(line, program, failing)


def test_yield_draws_the_p_chart_with_limits_and_revision_markers(
    ui: Console, tokens: dict[Role, str], seeded: Seeded
) -> None:
    ui.sign_in(tokens[Role.OPERATOR], "yield")
    ui.page.get_by_role("textbox", name="Line").fill(seeded.line)
    ui.page.get_by_role("button", name="Show").click()
    chart = ui.page.get_by_role("region", name=f"Yield of {seeded.line}")
    expect(chart).to_contain_text("outside the limits")
    expect(chart.locator("path.limit")).to_have_count(2)
    expect(chart.locator("circle.out").first).to_be_visible()
    ui.shot("yield")
    ui.page.get_by_label("By").select_option("program")
    ui.page.get_by_role("button", name="Show").click()
    by_program = ui.page.get_by_role("region", name=f"Yield of {seeded.program['id']}")
    expect(by_program.locator("line.rev").first).to_be_attached()
    ui.shot("yield-by-program")


def test_defects_pareto_and_its_drill_down(
    ui: Console, tokens: dict[Role, str], seeded: Seeded
) -> None:
    ui.sign_in(tokens[Role.VIEWER], "defects")
    ui.page.get_by_role("textbox", name="Line").fill(seeded.line)
    ui.page.get_by_label("Days").fill("2")
    ui.page.get_by_role("button", name="Show").click()
    table = ui.page.get_by_role("table", name="Defects by kind")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator("tbody tr").first).to_contain_text("dent")
    expect(table.locator("tbody tr").last).to_contain_text("100.0 %")
    expect(ui.page.locator("svg rect.bar")).to_have_count(2)
    ui.shot("defects")
    table.locator("tbody tr").first.get_by_role("link", name="Results").click()
    results = ui.page.get_by_role("table", name="Results")
    expect(results.locator("tbody tr").first).to_contain_text("dent")
    expect(results.get_by_text("scratch · tool-1", exact=True)).to_have_count(0)
    ui.shot("results-drill-down")


def test_result_shows_master_capture_and_boxes_with_synchronised_zoom(
    ui: Console, tokens: dict[Role, str], seeded: Seeded
) -> None:
    ui.sign_in(tokens[Role.VIEWER], f"results/{seeded.failing['result_id']}")
    panes = ui.page.locator(".viewer img")
    expect(panes).to_have_count(2)
    for i in range(2):
        expect(panes.nth(i)).to_have_attribute("src", re.compile("^blob:"))
    expect(ui.page.locator(".viewer rect")).to_have_count(len(seeded.failing["defects"]))
    expect(ui.page.get_by_role("table", name="Defects")).to_contain_text("tool-")
    stages = ui.page.locator(".viewer .stage")
    before = stages.nth(0).evaluate("e => e.style.transform")
    ui.page.get_by_role("button", name="Zoom in").click()
    after = [stages.nth(i).evaluate("e => e.style.transform") for i in range(2)]
    assert after[0] != before
    assert after[0] == after[1], after
    # Dragging one pane pans both.
    box = ui.page.locator(".viewer").nth(1).bounding_box()
    assert box
    ui.page.mouse.move(box["x"] + 100, box["y"] + 100)
    ui.page.mouse.down()
    ui.page.mouse.move(box["x"] + 160, box["y"] + 130)
    ui.page.mouse.up()
    panned = [stages.nth(i).evaluate("e => e.style.transform") for i in range(2)]
    assert panned[0] == panned[1] != after[0], panned
    ui.page.get_by_role("button", name="Fit").click()
    ui.shot("result")


def test_audit_filters_and_links_each_row(
    ui: Console, tokens: dict[Role, str], seeded: Seeded
) -> None:
    ui.sign_in(tokens[Role.OPERATOR], "audit")
    ui.page.get_by_label("Target").fill(f"program:{seeded.program['id']}")
    ui.page.get_by_role("button", name="Filter").click()
    log = ui.page.get_by_role("table", name="Audit log")
    expect(log.locator("tbody tr")).to_have_count(2)
    expect(log.locator("tbody tr code").nth(1)).not_to_be_empty()
    ui.shot("audit")
    log.get_by_role("link").first.click()
    expect(ui.page.get_by_role("heading", name=seeded.program["name"])).to_be_visible()


def test_storage_usage_integrity_and_a_gc_dry_run(
    ui: Console, tokens: dict[Role, str], seeded: Seeded
) -> None:
    ui.sign_in(tokens[Role.OPERATOR], "storage")
    expect(ui.page.get_by_role("region", name="Totals")).to_contain_text("All images")
    expect(ui.page.get_by_text("Last complete pass", exact=False)).to_be_visible()
    ui.page.get_by_role("button", name="Garbage collection dry run").click()
    dry = ui.page.get_by_role("region", name="Garbage collection dry run")
    expect(dry).to_contain_text("Nothing was deleted")
    ui.shot("storage")


def test_storage_hides_actions_from_a_role_without_them(
    ui: Console, tokens: dict[Role, str], gateway: httpx.Client
) -> None:
    # No viewer reaches Storage; an admin-made page doctored by a viewer is refused anyway.
    refused = gateway.post("/api/images/gc?dry_run=true", headers=auth(tokens[Role.VIEWER]))
    assert refused.status_code == 403


def test_schedules_and_a_retention_dry_run(
    ui: Console, tokens: dict[Role, str], gateway: httpx.Client
) -> None:
    admin = tokens[Role.ADMIN]
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    made = gateway.post(
        "/api/backup-schedules", json={"name": name, "cron": "0 2 * * *"}, headers=auth(admin)
    )
    assert made.status_code == 201, made.text
    ui.sign_in(tokens[Role.OPERATOR], "schedules")
    row = (
        ui.page.get_by_role("table", name="Backup schedules")
        .get_by_role("row")
        .filter(has_text=name)
    )
    expect(row).to_contain_text("0 2 * * *")
    ui.page.get_by_role("button", name="Retention dry run").click()
    expect(ui.page.get_by_role("region", name="Retention dry run")).to_contain_text(
        "Nothing was deleted"
    )
    ui.shot("schedules")
    gateway.delete(f"/api/backup-schedules/{made.json()['id']}", headers=auth(admin))


def test_tokens_create_shown_once_and_revoke(
    ui: Console, tokens: dict[Role, str], gateway: httpx.Client
) -> None:
    name = f"console-made-{uuid.uuid4().hex[:6]}"
    ui.sign_in(tokens[Role.ADMIN], "tokens")
    ui.page.get_by_label("Name").fill(name)
    ui.page.get_by_label("Role").select_option("viewer")
    ui.page.get_by_role("button", name="Create token").click()
    secret = ui.page.get_by_test_id("secret").inner_text()
    assert secret.startswith("loupe_")
    assert gateway.get("/api/programs", headers=auth(secret)).status_code == 200
    ui.shot("tokens-created")
    ui.page.get_by_role("button", name="I have copied it").click()
    expect(ui.page.get_by_test_id("secret")).to_have_count(0)
    ui.page.get_by_role("button", name=f"Revoke {name}").click()
    expect(ui.page.get_by_role("button", name=f"Revoke {name}")).to_have_count(0)
    eventually(
        "the revoked token refused",
        lambda: gateway.get("/api/programs", headers=auth(secret)).status_code == 401,
        timeout_s=10,
    )
    ui.shot("tokens")


def test_a_simulated_result_appears_on_the_lines_page(
    ui: Console, tokens: dict[Role, str], platform: Stack, tmp_path: Path
) -> None:
    line = f"sim-{uuid.uuid4().hex[:6]}"
    ui.sign_in(tokens[Role.VIEWER], "lines")
    expect(ui.page.get_by_text("live", exact=True)).to_be_visible(timeout=15_000)
    e = platform.endpoints
    env = {
        **os.environ,
        "LOUPE_LINE_NATS_URL": e.nats_url,
        "LOUPE_LINE_NATS_USER": e.nats_user,
        "LOUPE_LINE_NATS_PASSWORD": e.nats_password,
        "LOUPE_LINE_NAMESPACE": platform.namespace,
    }
    started = time.monotonic()
    done = subprocess.run(
        [LINE_CLI, "simulate", "--line-id", line, "--station", "S1", "--count", "1",
         "--rate", "0", "--spool", str(tmp_path / "spool.sqlite3")],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    published = time.monotonic()
    assert done.returncode == 0, done.stdout + done.stderr
    tile = ui.page.get_by_role("article", name=f"Line {line}")
    expect(tile).to_be_visible(timeout=10_000)
    seen = time.monotonic()
    print(
        f"\nlines page: simulate ran {published - started:.2f} s; the tile appeared "
        f"{seen - published:.2f} s after it exited"
    )
    ui.shot("lines")


def test_keyboard_only_through_the_main_flows(ui: Console, tokens: dict[Role, str]) -> None:
    ui.page.goto(ui.url)
    ui.page.keyboard.press("Tab")
    expect(ui.page.get_by_label("Access token")).to_be_focused()
    ui.page.keyboard.type(tokens[Role.ADMIN])
    ui.page.keyboard.press("Enter")
    ui.page.get_by_role("navigation", name="Pages").wait_for()
    ui.page.keyboard.press("Tab")
    expect(ui.page.get_by_role("link", name="Skip to content")).to_be_focused()
    # Tab to Programs in the navigation, open it with Enter.
    for _ in range(30):
        ui.page.keyboard.press("Tab")
        if ui.page.evaluate("document.activeElement.textContent") == "Programs":
            break
    focused = ui.page.locator(":focus")
    expect(focused).to_have_text("Programs")
    outline = focused.evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline != "none", "focus must be visible"
    ui.page.keyboard.press("Enter")
    expect(ui.page.get_by_role("heading", name="Programs")).to_be_visible()
    for _ in range(30):
        ui.page.keyboard.press("Tab")
        if ui.page.evaluate("document.activeElement.textContent") == "Backups":
            break
    ui.page.keyboard.press("Enter")
    expect(ui.page.get_by_role("heading", name="Backups")).to_be_visible()
    for _ in range(40):
        ui.page.keyboard.press("Tab")
        if ui.page.evaluate("document.activeElement.textContent") == "Create backup":
            break
    expect(ui.page.locator(":focus")).to_have_text("Create backup")
    ui.shot("keyboard-focus")


PAGES = ["lines", "yield", "defects", "programs", "try", "backups", "restore", "schedules",
         "migration", "storage", "health", "audit", "tokens"]  # fmt: skip


@pytest.fixture
def axe_tab(browser: Browser, platform: Stack) -> Iterator[Console]:
    # axe is injected as an inline script, which the console's policy forbids: this one
    # context bypasses the CSP (the other tests keep it and fail on any violation).
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    try:
        yield Console(context.new_page(), platform.console_url)
    finally:
        context.close()


def test_no_serious_axe_violation_on_any_page(
    axe_tab: Console, tokens: dict[Role, str], seeded: Seeded
) -> None:
    axe_tab.sign_in(tokens[Role.ADMIN])
    found: dict[str, list[str]] = {}
    for where in [
        *PAGES,
        f"programs/{seeded.program['id']}",
        f"programs/{seeded.program['id']}/golden/1",
        f"results/{seeded.failing['result_id']}",
    ]:
        axe_tab.open(where)
        axe_tab.page.get_by_role("heading", level=1).first.wait_for()
        expect(axe_tab.page.locator("[aria-busy='true']")).to_have_count(0, timeout=15_000)
        axe_tab.page.add_script_tag(path=str(AXE))
        violations = axe_tab.page.evaluate(
            """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
                .filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => `${v.id} (${v.impact}): ` +
                     v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', '))"""
        )
        if violations:
            found[where] = violations
    assert found == {}, found
