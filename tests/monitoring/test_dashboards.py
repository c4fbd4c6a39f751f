"""The Grafana dashboards: valid JSON with a unique uid, a data source variable every panel
uses, and expressions that name only metrics the services export or the rules record."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loupe_stack.config import SERVICES
from loupe_stack.stack import Stack
from tests.monitoring.rules import DASHBOARDS_DIR, metric_names, recorded, scraped_names
from tests.monitoring.scraping import exported, scrape

DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))
WANTED = {"loupe-overview", "loupe-lines-results", "loupe-storage", "loupe-backups"}
PROMETHEUS_OWN = {"up"}


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets") or []
        if "expr" in target
    ]


def test_the_wanted_dashboards_exist_with_unique_uids() -> None:
    uids = [_load(path)["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids)), f"duplicate uids: {uids}"
    assert set(uids) >= WANTED, f"missing dashboards: {WANTED - set(uids)}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_panels_use_the_datasource_variable(path: Path) -> None:
    dashboard = _load(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    source = variables.get("datasource")
    assert source is not None, f"{path.name} has no datasource variable"
    assert source["type"] == "datasource"
    assert source["query"] == "prometheus"
    for panel in _panels(dashboard["panels"]):
        if panel.get("type") == "row":
            continue
        for holder in [panel, *(panel.get("targets") or [])]:
            uid = (holder.get("datasource") or {}).get("uid")
            assert uid in ("${datasource}", "$datasource"), (
                f"{path.name}: panel {panel.get('title')!r} uses data source {uid!r}"
            )
        assert panel.get("targets"), f"{path.name}: panel {panel.get('title')!r} shows nothing"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_expressions_name_recorded_or_scraped_metrics(path: Path) -> None:
    """Static half: a colon in a name means a recording rule, and that rule must exist."""
    made = recorded()
    for expr in _expressions(_load(path)):
        for name in metric_names(expr):
            if ":" in name:
                assert name in made, f"{path.name}: {name} is not a recording rule ({expr})"


def test_every_metric_a_dashboard_names_is_exported(platform: Stack, admin_token: str) -> None:
    offered = set().union(*(exported(scrape(platform, s, admin_token)) for s in SERVICES))
    missing = {
        (path.name, name)
        for path in DASHBOARDS
        for expr in _expressions(_load(path))
        for name in scraped_names(expr) - offered - PROMETHEUS_OWN
    }
    assert not missing, f"dashboards name metrics no service exports: {sorted(missing)}"
