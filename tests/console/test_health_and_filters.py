"""The Health page on the services' own summaries (operations, latency quantiles, error rate,
storage) with the alert thresholds marked; the results list filtered by defect kind; the
audit log filtered by request id, from the form and from a row's link."""

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from loupe_shared.kit.auth import Role
from tests.catalog.helpers import new_program
from tests.conftest import auth
from tests.console.conftest import Console
from tests.support import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_health_shows_every_services_figures_with_the_alert_thresholds(
    ui: Console, tokens: dict[Role, str]
) -> None:
    ui.sign_in(tokens[Role.ADMIN], "health")
    services = ui.page.get_by_role("table", name="Services")
    header = services.locator("thead")
    expect(header).to_contain_text("error rate alert > 5 %")
    expect(header).to_contain_text("p95 alert > 2.00 s")
    for service in ("catalog", "images", "backup", "inspect"):
        row = services.get_by_role("row", name=f"Service {service}")
        expect(row.get_by_text("ready", exact=True)).to_be_visible()
        expect(row.locator("td").nth(2)).to_have_text(re.compile(r"^\d+$"))  # operations
    catalog = services.get_by_role("row", name="Service catalog")
    expect(catalog.locator("td").nth(4)).to_have_text(re.compile(r"%"))  # error rate
    for quantile in (6, 7, 8):  # p50, p95, p99 from the service's own histogram
        expect(catalog.locator("td").nth(quantile)).to_have_text(re.compile(r"\d+(\.\d+)? m?s"))
    expect(catalog.locator("td").nth(5)).to_have_text(re.compile(r"\d+(\.\d+)? m?s"))  # avg
    expect(catalog.locator("td").nth(9)).to_have_text(re.compile(r"%"))  # cache hit rate
    expect(ui.page.get_by_test_id("storage-used")).to_have_text(re.compile(r"\d+(\.\d)? [KMGT]?B"))
    expect(ui.page.get_by_text(re.compile(r"full \(alert at 85 %\)"))).to_be_visible()
    expect(ui.page.get_by_role("meter", name="Storage used")).to_have_attribute("high", "0.85")
    ui.shot("health")


def _defect(kind: str) -> dict[str, Any]:
    return {"kind": kind, "bbox": {"x": 1, "y": 2, "width": 3, "height": 4}, "area": 12}


def _result(line: str, kinds: list[str]) -> dict[str, Any]:
    return {
        "result_id": str(uuid.uuid4()),
        "line_id": line,
        "station": "S1",
        "part_id": f"{line}-{uuid.uuid4().hex[:6]}",
        "verdict": "fail" if kinds else "pass",
        "defects": [_defect(k) for k in kinds],
        "captured_at": datetime.now(UTC).isoformat(),
    }


def test_results_filtered_by_defect_kind(
    ui: Console, tokens: dict[Role, str], gateway: httpx.Client
) -> None:
    line = f"kind-{uuid.uuid4().hex[:6]}"
    batch = [
        *[_result(line, ["dent", "scratch"]) for _ in range(3)],
        *[_result(line, ["scratch"]) for _ in range(4)],
        _result(line, []),
    ]
    sent = gateway.post("/api/results", json={"results": batch}, headers=auth(tokens[Role.LINE]))
    assert sent.status_code == 202, sent.text

    def stored() -> bool:
        page = gateway.get(
            "/api/results", params={"line_id": line}, headers=auth(tokens[Role.VIEWER])
        )
        return len(page.json()["items"]) == len(batch)

    eventually("the results stored", stored)
    ui.sign_in(tokens[Role.VIEWER], f"results?line_id={line}")
    table = ui.page.get_by_role("table", name="Results")
    expect(table.locator("tbody tr")).to_have_count(len(batch))
    filters = ui.page.get_by_role("search", name="Result filters")
    expect(filters.get_by_label("Line")).to_have_value(line)
    filters.get_by_label("Defect kind").fill("dent")
    filters.get_by_role("button", name="Filter").click()
    expect(ui.page).to_have_url(re.compile(r"#/results\?.*kind=dent"))
    expect(table.locator("tbody tr")).to_have_count(3)
    for row in table.locator("tbody tr").all():
        expect(row).to_contain_text("dent")
    ui.shot("results-defect-kind")
    filters.get_by_label("Defect kind").fill("crack")
    filters.get_by_role("button", name="Filter").click()
    expect(ui.page.get_by_text("No results match on this page")).to_be_visible()


def test_audit_filtered_by_request_id_from_the_form_and_a_rows_link(
    ui: Console, tokens: dict[Role, str], gateway: httpx.Client
) -> None:
    request_id = f"console-{uuid.uuid4().hex}"
    engineer = {**auth(tokens[Role.ENGINEER]), "X-Request-ID": request_id}
    created = gateway.post("/api/programs", json=new_program(), headers=engineer)
    assert created.status_code == 201, created.text
    other = gateway.post("/api/programs", json=new_program(), headers=auth(tokens[Role.ENGINEER]))
    assert other.status_code == 201, other.text

    ui.sign_in(tokens[Role.ADMIN], "audit")
    log = ui.page.get_by_role("table", name="Audit log")
    expect(log.locator("tbody tr").first).to_be_visible()
    ui.page.get_by_label("Request id").fill(request_id)
    ui.page.get_by_role("button", name="Filter").click()
    expect(log.locator("tbody tr")).to_have_count(1)
    expect(log.locator("tbody tr")).to_contain_text(f"program:{created.json()['id']}")
    ui.shot("audit-request-id")

    # From the whole log: the other program's request id link opens the log of that request.
    ui.page.get_by_label("Request id").fill("")
    ui.page.get_by_role("button", name="Filter").click()
    row = log.locator("tbody tr").filter(has_text=f"program:{other.json()['id']}")
    link = row.locator("td").nth(4).get_by_role("link")
    other_request = str(link.text_content())
    link.click()
    expect(ui.page.get_by_label("Request id")).to_have_value(other_request)
    expect(log.locator("tbody tr")).to_have_count(1)
    expect(log.locator("tbody tr")).to_contain_text(f"program:{other.json()['id']}")
