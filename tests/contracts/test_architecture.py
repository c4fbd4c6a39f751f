"""The architecture, enforced: import-linter's contracts in pyproject.toml
(`[tool.importlinter]`) hold over the installed tree: the four services never import each
other; `loupe_shared`, `loupe_line` and `loupe_stack` import no service; `loupe_shared`
imports neither the stack nor the line client; its contracts import no kit."""

import ast
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


def _imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_no_test_module_imports_another_test_module() -> None:
    """Shared test helpers live in modules of their own (`conftest.py`, `helpers.py`,
    `support.py`, ...): a test module imported by another runs its module-level code twice and
    ties the two files' private names together."""
    tests = ROOT / "tests"
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted(tests.rglob("*.py"))
        for name in _imported_modules(path)
        if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")
    ]
    assert list(tests.rglob("test_*.py")), "found no test modules"
    assert not offenders, offenders
