"""The Health page's alert thresholds (console/src/lib/thresholds.ts) are those of the
Prometheus alert rules (deploy/monitoring/prometheus/rules/loupe.alerts.yaml)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "monitoring" / "prometheus" / "rules" / "loupe.alerts.yaml"
CONSTANT = ROOT / "console" / "src" / "lib" / "thresholds.ts"
# The console's name for each threshold, and the alert that holds it.
ALERTS = {
    "errorRatio": "LoupeHighErrorRate",
    "p95Seconds": "LoupeSlowRequests",
    "storageUsedRatio": "LoupeObjectStoreFilling",
}


def _rule_thresholds() -> dict[str, float]:
    rules = yaml.safe_load(RULES.read_text())
    found: dict[str, float] = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert")
            match = re.fullmatch(r"\s*[\w:]+(?:\{[^}]*\})?\s*>\s*([0-9.]+)\s*", str(rule["expr"]))
            if name in ALERTS.values() and match:
                found[name] = float(match.group(1))
    return found


def _console_thresholds() -> dict[str, float]:
    text = CONSTANT.read_text()
    return {k: float(v) for k, v in re.findall(r"^\s*(\w+):\s*([0-9.]+),", text, re.MULTILINE)}


def test_the_health_pages_thresholds_are_the_alert_rules() -> None:
    rules = _rule_thresholds()
    console = _console_thresholds()
    assert set(console) == set(ALERTS), console
    assert {name: console[key] for key, name in ALERTS.items()} == rules
