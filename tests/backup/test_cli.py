"""The backup CLI: create with a progress bar, list, verify, download, import, dry-run."""

import json
import subprocess
import sys
from pathlib import Path

from loupe_stack.stack import Stack
from tests.backup.conftest import Installation


def cli(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loupe_backup.cli", "--url", url, "--token", token, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_round_trip(source: Installation, tmp_path: Path) -> None:
    url, token = source.url("backup"), source.admin["Authorization"].split()[1]
    made = cli(url, token, "create", "--wait", "--without", "results")
    assert made.returncode == 0, made.stderr
    state = json.loads(made.stdout)
    assert state["status"] == "completed"
    assert state["include"]["results"] is False
    assert "backup" in made.stderr  # the progress bar

    listed = cli(url, token, "list", "--json")
    assert listed.returncode == 0
    assert state["id"] in [i["id"] for i in json.loads(listed.stdout)["items"]]
    assert cli(url, token, "list").returncode == 0  # the table
    checked = cli(url, token, "verify", state["id"])
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["ok"] is True

    archive = tmp_path / "set.tar"
    got = cli(url, token, "download", state["id"], str(archive))
    assert got.returncode == 0, got.stderr
    assert archive.stat().st_size > 0
    assert not (tmp_path / "set.tar.part").exists()
    imported = cli(url, token, "import", str(archive))
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["kind"] == "imported"

    dry = cli(url, token, "restore", state["id"])
    assert dry.returncode == 1  # a partial set cannot be restored: the plan says why
    assert "only complete backups" in dry.stdout

    refused = cli(url, "loupe_0000000000000000_" + "x" * 40, "list")
    assert refused.returncode == 1
    assert "401" in refused.stderr


def test_cli_through_the_gateway(platform: Stack, admin_token: str) -> None:
    made = cli(platform.gateway_url, admin_token, "create", "--wait")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["status"] == "completed"
