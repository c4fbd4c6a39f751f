"""The compose Prometheus configuration, checked by promtool with its mounted paths pointed
at the repository's files."""

import subprocess
from pathlib import Path

from tests.monitoring.rules import MONITORING, RULES_DIR

CONFIG = MONITORING / "prometheus" / "prometheus.yml"


def test_promtool_checks_the_prometheus_config(promtool: Path, tmp_path: Path) -> None:
    token = tmp_path / "metrics_token"
    token.write_text("loupe_0123456789abcdef_placeholder-placeholder-placeholder")
    text = CONFIG.read_text()
    assert "/run/secrets/metrics_token" in text
    assert "/etc/prometheus/rules/" in text
    local = tmp_path / "prometheus.yml"
    local.write_text(
        text.replace("/run/secrets/metrics_token", str(token)).replace(
            "/etc/prometheus/rules/", f"{RULES_DIR}/"
        )
    )
    done = subprocess.run(
        [str(promtool), "check", "config", str(local)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rule_files = len(list(RULES_DIR.glob("*.yaml")))
    assert f"SUCCESS: {rule_files} rule files found" in done.stdout, done.stdout
