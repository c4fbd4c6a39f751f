"""How `make test` splits the suite between its two workers (tests/conftest.py): whole files,
whole folders where a costly fixture is shared, the longest scopes first — named by paths
that exist, so a renamed file or folder cannot drop out of the plan unnoticed."""

from pathlib import Path

from tests.conftest import LONGEST_FIRST, WHOLE_FOLDERS, scope_of

TESTS = Path(__file__).resolve().parents[1]


def test_a_file_is_one_scope_and_the_costly_folders_are_whole() -> None:
    assert scope_of("tests/catalog/test_programs.py::test_x") == "catalog/test_programs.py"
    assert scope_of("tests/catalog/test_programs.py::test_x[a::b]") == "catalog/test_programs.py"
    assert scope_of("tests/backup/test_restore.py::test_y") == "backup"
    assert scope_of("tests/cluster/test_results_kill.py::test_z") == "cluster"
    assert scope_of("tests/stack/test_run.py::test_w") == "stack/test_run.py"


def test_the_plan_names_folders_and_files_that_exist() -> None:
    for folder in WHOLE_FOLDERS:
        assert (TESTS / folder / "conftest.py").is_file(), folder
    for scope in LONGEST_FIRST:
        assert (TESTS / scope).exists(), scope
        assert scope_of(f"tests/{scope}/x.py::t" if scope in WHOLE_FOLDERS else scope) == scope
