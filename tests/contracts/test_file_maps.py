"""The newcomer's maps: the READMEs of the shared libraries and of the backup service list every
module, so a file added without a line in its map fails here instead of going unexplained."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (README, the folder its paths are written relative to, the package folder to walk)
MAPS = [
    ("libs/loupe_shared/README.md", "libs/loupe_shared", "libs/loupe_shared"),
    ("libs/loupe_stack/README.md", "libs/loupe_stack", "libs/loupe_stack"),
    ("libs/loupe_line/README.md", "libs/loupe_line", "libs/loupe_line"),
    ("services/backup/README.md", "services/backup", "services/backup/loupe_backup"),
]


def modules(relative_to: Path, package: Path) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "__init__.py" and path.parent != package:
            continue  # a sub-package's marker; the package's own __init__ may hold its API
        found.append(path.relative_to(relative_to).as_posix())
    return found


@pytest.mark.parametrize(("readme", "relative_to", "package"), MAPS, ids=[m[0] for m in MAPS])
def test_every_module_is_on_its_readme_map(readme: str, relative_to: str, package: str) -> None:
    text = (ROOT / readme).read_text()
    listed = modules(ROOT / relative_to, ROOT / package)
    assert len(listed) > 5, f"walked the wrong folder for {readme}"
    missing = [m for m in listed if f"`{m}`" not in text]
    assert not missing, f"{readme} has no line for {missing}"
