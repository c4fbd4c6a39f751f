"""The architecture, enforced: import-linter's contracts in pyproject.toml
(`[tool.importlinter]`) hold over the installed tree: the four services never import each
other; `loupe_shared`, `loupe_line` and `loupe_stack` import no service; `loupe_shared`
imports neither the stack nor the line client; its contracts import no kit."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = 4  # as many as pyproject.toml declares: a dropped contract fails here too


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    run = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert f"Contracts: {CONTRACTS} kept, 0 broken." in report, report
