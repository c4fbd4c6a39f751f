"""The Prometheus rules: valid for promtool, every alert unit-tested both ways, and
described for the operator who receives it."""

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.rules import RULE_TESTS_DIR, alerts, rule_files

SEVERITIES = {"warning", "critical"}


def _run(promtool: Path, *args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_promtool_checks_the_rule_files(promtool: Path) -> None:
    assert rule_files(), "no rule files in deploy/monitoring/prometheus/rules"
    out = _run(promtool, "check", "rules", *map(str, rule_files()))
    assert out.count("SUCCESS") == len(rule_files())


@pytest.mark.parametrize("test_file", sorted(RULE_TESTS_DIR.glob("*.test.yaml")), ids=str)
def test_promtool_unit_tests_pass(promtool: Path, test_file: Path) -> None:
    _run(promtool, "test", "rules", test_file.name, cwd=RULE_TESTS_DIR)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for test_file in RULE_TESTS_DIR.glob("*.test.yaml"):
        for test in yaml.safe_load(test_file.read_text())["tests"]:
            for check in test.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names, "no alerts defined"
    assert not names - firing, f"alerts never tested firing: {sorted(names - firing)}"
    assert not names - quiet, f"alerts never tested quiet: {sorted(names - quiet)}"
    assert not (firing | quiet) - names, f"tests of unknown alerts: {(firing | quiet) - names}"


def test_every_alert_with_a_for_is_tested_pending_before_it() -> None:
    """durations.test.yaml: an alert whose condition holds is pending, not firing, until its
    `for:` has passed (a dropped or shortened `for` fails there)."""
    durations = yaml.safe_load((RULE_TESTS_DIR / "durations.test.yaml").read_text())["tests"]
    pending = {
        check["alertname"]
        for test in durations
        for check in test.get("alert_rule_test", [])
        if check.get("exp_alerts") == []
    }
    waiting = {rule["alert"] for rule in alerts() if rule.get("for")}
    assert waiting, "no alert has a for:"
    assert not waiting - pending, f"for: never tested: {sorted(waiting - pending)}"


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: str(a["alert"]))
def test_every_alert_has_severity_summary_and_description(alert: dict[str, Any]) -> None:
    labels: dict[str, str] = alert.get("labels") or {}
    annotations: dict[str, str] = alert.get("annotations") or {}
    assert labels.get("severity") in SEVERITIES, f"{alert['alert']}: severity {labels}"
    assert annotations.get("summary"), f"{alert['alert']} has no summary"
    assert len(annotations.get("description", "")) > 80, (
        f"{alert['alert']}: the description must tell the operator what to do"
    )
