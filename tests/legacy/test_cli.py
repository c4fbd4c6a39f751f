"""`loupe migrate-legacy` as a person runs it, against the session's gateway."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from loupe_stack.stack import Stack
from tests.legacy.conftest import Migrator
from tests.legacy.helpers import data_url, image_bytes, legacy_program, renamed_fixture

pytestmark = pytest.mark.e2e


def loupe(platform: Stack, headers: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LOUPE_GATEWAY_URL": platform.gateway_url,
        "LOUPE_TOKEN": headers["Authorization"].removeprefix("Bearer "),
        "COLUMNS": "240",
    }
    return subprocess.run(
        [sys.executable, "-m", "loupe_stack", "migrate-legacy", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_dry_run_apply_and_rollback_from_the_command_line(
    platform: Stack, engineer: dict[str, str], tmp_path: Path
) -> None:
    programs = renamed_fixture()
    export = tmp_path / "export.json"
    export.write_text(json.dumps({"vision_programs": json.dumps(programs)}))

    dry = loupe(platform, engineer, str(export))
    assert dry.returncode == 0, dry.stderr
    assert "Dry run — nothing was written" in dry.stdout
    assert dry.stdout.count("│ would import") == 4
    assert "the bytes are not an image (declared image/jpeg)" in dry.stdout
    assert (
        "programs 5, would import 4, would revise 0, already migrated 0, duplicate 0, "
        "invalid 1, failed 0"
    ) in dry.stdout

    applied = loupe(platform, engineer, str(export), "--apply", "--json")
    assert applied.returncode == 0, applied.stderr
    report: dict[str, Any] = json.loads(applied.stdout)
    assert report["totals"]["imported"] == 4

    again = loupe(platform, engineer, str(export), "--apply")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already_migrated") == 4

    undone = loupe(platform, engineer, "--rollback", report["run_id"])
    assert undone.returncode == 0, undone.stderr
    assert undone.stdout.count("archived") == 4


def test_the_command_line_explains_a_refused_export(
    platform: Stack, engineer: dict[str, str], tmp_path: Path
) -> None:
    export = tmp_path / "cut.json"
    export.write_text('[{"id": "prog_1", "na')
    done = loupe(platform, engineer, str(export))
    assert done.returncode == 2
    assert "400 Unreadable legacy export: The export cannot be read: not JSON" in done.stderr
    missing = loupe(platform, engineer, str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert "no file" in missing.stderr


def test_two_runs_of_one_export_at_once_import_each_program_once(
    gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    programs = [legacy_program(image=data_url(image_bytes(".png"))) for _ in range(3)]
    reports: list[dict[str, Any]] = []
    migrator = Migrator(gateway, engineer)

    def run() -> None:
        reports.append(migrator.run(programs, dry_run=False))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(reports) == 2
    per_program = sorted(
        sorted(r["items"][i]["outcome"] for r in reports) for i in range(len(programs))
    )
    assert per_program == [["already_migrated", "imported"]] * 3
    ids = {r["items"][i]["program_id"] for r in reports for i in range(len(programs))}
    assert len(ids) == 3
