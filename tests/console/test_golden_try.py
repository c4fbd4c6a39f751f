"""The console's Golden set and Try pages on real data: a program whose master and captures
come from the inspection tests' synthetic generator, inspected by the platform's own worker
(the golden test runs through `rpc.inspect.evaluate`, Try through `POST /api/inspections/try`)."""

import base64
import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from loupe_shared.kit.auth import Role
from tests.conftest import auth
from tests.console.conftest import Console
from tests.inspect import synthetic
from tests.support import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _upload(gateway: httpx.Client, token: str, data: bytes, kind: str) -> str:
    answer = gateway.post(
        "/api/images",
        params={"kind": kind},
        content=data,
        headers={**auth(token), "Content-Type": "image/png"},
        timeout=60,
    )
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["sha256"])


@pytest.fixture(scope="module")
def part(gateway: httpx.Client, tokens: dict[Role, str]) -> dict[str, Any]:
    """A program on the synthetic suite's first part (its master), one good capture attached
    through the API, and the PNG bytes of another good and a bad capture to drop."""
    engineer = tokens[Role.ENGINEER]
    good = [synthetic.make_case(seed, bad=False) for seed in (0, 28)]
    bad = synthetic.make_case(1, bad=True)
    master = _upload(gateway, engineer, synthetic.encode_png(good[0].master), "master")
    eventually(
        "the master's image record",
        lambda: (
            gateway.get(f"/api/image-records/{master}", headers=auth(engineer)).status_code == 200
        ),
        timeout_s=15,
    )
    made = gateway.post(
        "/api/programs",
        json={
            "name": "Golden console part",
            "description": "synthetic part for the console",
            "tags": ["golden"],
            "config": synthetic.program_config(good[0].roi),
            "master_image_sha256": master,
        },
        headers=auth(engineer),
    )
    assert made.status_code == 201, made.text
    program = made.json()
    first = _upload(gateway, engineer, synthetic.encode_png(good[0].capture), "capture")
    attached = gateway.put(
        f"/api/programs/{program['id']}/revisions/1/golden-set/{first}",
        json={"label": "good", "note": "from the API"},
        headers=auth(engineer),
    )
    assert attached.status_code == 201, attached.text
    return {
        "program": program,
        "first": first,
        "good_png": synthetic.encode_png(good[1].capture),
        "bad_png": synthetic.encode_png(bad.capture),
        "bad_defects": len(bad.defects),
    }


def _drop(page: Page, region: str, data: bytes, name: str) -> None:
    """A real drop event carrying the file, as the browser makes it from a drag."""
    transfer = page.evaluate_handle(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            return transfer;
        }""",
        [base64.b64encode(data).decode(), name],
    )
    page.get_by_role("region", name=region).dispatch_event("drop", {"dataTransfer": transfer})


def _rows(page: Page, table: str) -> Any:
    return page.get_by_role("table", name=table).locator("tbody tr")


def test_golden_set_attach_by_drop_run_a_test_relabel_and_remove(
    ui: Console, tokens: dict[Role, str], part: dict[str, Any], gateway: httpx.Client
) -> None:
    program_id = part["program"]["id"]
    ui.sign_in(tokens[Role.ENGINEER], f"programs/{program_id}")
    ui.page.get_by_role("link", name="golden set of 1").click()
    expect(ui.page.get_by_role("heading", level=1)).to_contain_text("Golden set")
    set_rows = _rows(ui.page, "Golden set")
    expect(set_rows).to_have_count(1)
    expect(set_rows.first.locator("img")).to_have_attribute("src", re.compile("^blob:"))
    expect(ui.page.get_by_role("table", name="Earlier runs")).to_have_count(0)
    expect(ui.page.get_by_text("No test run yet.")).to_be_visible()

    # A bad part dropped as bad; a good part dropped as "bad" on purpose (a labelling slip).
    ui.page.get_by_label("Label for dropped captures").select_option("bad")
    _drop(ui.page, "Drop captures", part["bad_png"], "bad-part.png")
    expect(set_rows).to_have_count(2)
    _drop(ui.page, "Drop captures", part["good_png"], "slip.png")
    expect(set_rows).to_have_count(3)
    expect(ui.page.get_by_role("heading", name=re.compile("1 good · 2 bad"))).to_be_visible()
    stored = gateway.get(
        f"/api/programs/{program_id}/revisions/1/golden-set", headers=auth(tokens[Role.VIEWER])
    ).json()
    assert (stored["good"], stored["bad"]) == (1, 2)

    ui.page.get_by_role("button", name="Run a test").click()
    matrix = ui.page.get_by_role("table", name="Confusion matrix")
    expect(matrix).to_contain_text("1 true accepts", timeout=60_000)
    expect(matrix).to_contain_text("1 true rejects")
    expect(matrix).to_contain_text("1 false accepts")
    expect(ui.page.get_by_text("did not pass").first).to_be_visible()
    mismatches = _rows(ui.page, "Mismatches")
    expect(mismatches).to_have_count(1)
    expect(mismatches.first).to_contain_text("pass")
    link = mismatches.first.get_by_role("link")
    slipped = str(link.get_attribute("href")).rsplit("capture=", 1)[1]
    assert slipped != part["first"]
    expect(_rows(ui.page, "Earlier runs")).to_have_count(1)
    ui.shot("golden-set")

    # Relabel the slip as good; the second run passes and both runs are listed.
    slip_row = set_rows.filter(has_text=slipped[:12])
    slip_row.get_by_role("button", name="Mark good").click()
    expect(ui.page.get_by_role("heading", name=re.compile("2 good · 1 bad"))).to_be_visible()
    ui.page.get_by_role("button", name="Run a test").click()
    expect(_rows(ui.page, "Earlier runs")).to_have_count(2, timeout=60_000)
    expect(ui.page.get_by_text("Every capture was judged as labelled.")).to_be_visible()
    expect(matrix).to_contain_text("2 true accepts")
    ui.shot("golden-set-passed")

    set_rows.filter(has_text=slipped[:12]).get_by_role("button", name="Remove").click()
    expect(set_rows).to_have_count(2)
    runs = gateway.get(
        f"/api/programs/{program_id}/revisions/1/test-runs", headers=auth(tokens[Role.VIEWER])
    ).json()["items"]
    assert [r["passed"] for r in runs] == [True, False]

    # The mismatch's link opens Try on that capture with the program and revision chosen.
    ui.page.get_by_role("button", name="Show").nth(1).click()
    ui.page.get_by_role("table", name="Mismatches").get_by_role("link").click()
    expect(ui.page.get_by_role("heading", level=1)).to_have_text("Try a program")
    expect(ui.page.get_by_text(f"Capture: {slipped[:12]}")).to_be_visible()


def test_a_viewer_sees_the_golden_set_without_write_controls(
    ui: Console, tokens: dict[Role, str], part: dict[str, Any]
) -> None:
    ui.sign_in(tokens[Role.VIEWER], f"programs/{part['program']['id']}/golden/1")
    expect(_rows(ui.page, "Golden set").first).to_be_visible()
    expect(ui.page.get_by_role("region", name="Drop captures")).to_have_count(0)
    expect(ui.page.get_by_role("button", name="Run a test")).to_have_count(0)
    expect(ui.page.get_by_role("button", name="Remove")).to_have_count(0)


def test_try_a_dropped_capture_shows_verdict_boxes_and_overlay(
    ui: Console, tokens: dict[Role, str], part: dict[str, Any]
) -> None:
    program = part["program"]
    ui.sign_in(tokens[Role.ENGINEER], "try")
    inspect = ui.page.get_by_role("button", name="Inspect", exact=True)
    expect(inspect).to_be_disabled()
    ui.page.get_by_label("Program", exact=True).select_option(program["id"])
    expect(ui.page.get_by_label("Revision", exact=True)).to_have_value("1")
    _drop(ui.page, "Drop a capture", part["bad_png"], "bad-part.png")
    expect(ui.page.get_by_text("Capture: bad-part.png")).to_be_visible()
    inspect.click()
    outcome = ui.page.get_by_role("region", name="Outcome")
    expect(outcome.locator(".verdict")).to_have_text("fail", timeout=60_000)
    boxes = ui.page.locator(".viewer rect")
    expect(boxes.first).to_be_visible()
    drawn = boxes.count()
    assert drawn >= 1
    expect(_rows(ui.page, "Defects")).to_have_count(drawn)
    expect(ui.page.locator(".viewer img")).to_have_attribute("src", re.compile("^blob:"))
    ui.shot("try")
    ui.page.get_by_label("the inspector's overlay").check()
    expect(ui.page.locator("figure.pane figcaption")).to_have_text("Overlay")
    expect(ui.page.locator(".viewer img")).to_have_attribute("src", re.compile("^blob:"))

    # A good capture passes with no box.
    _drop(ui.page, "Drop a capture", part["good_png"], "good-part.png")
    expect(ui.page.get_by_text("Capture: good-part.png")).to_be_visible()
    inspect.click()
    expect(outcome.locator(".verdict")).to_have_text("pass", timeout=60_000)
    expect(ui.page.locator(".viewer rect")).to_have_count(0)
    expect(_rows(ui.page, "Defects")).to_have_text("no defects")
    ui.shot("try-pass")
