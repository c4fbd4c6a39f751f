"""`@loupe/client` as a package: its own unit suite (vitest) passes, its strict type check
passes, and its generated types are exactly what the running services' OpenAPI gives."""

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.client.helpers import PACKAGE, npm

SERVICES = ("catalog", "images", "backup", "inspect")


def test_the_unit_suite_and_the_type_check_pass(client_package: Path) -> None:
    checked = npm("run", "typecheck")
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-2000:]
    tested = npm("test")
    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-2000:]
    assert " passed" in tested.stdout


def _generated(service: str, document: Path) -> str:
    """What `npm run generate` writes for `document`, without touching the package."""
    node = str(Path(sys.executable).parent / "node")
    script = (
        "const [{ generate }, fs] = await Promise.all(["
        "import('./scripts/generate.mjs'), import('node:fs')]);"
        "const { LOUPE_SERVICE: service, LOUPE_DOCUMENT: path } = process.env;"
        "process.stdout.write(await generate(service, fs.readFileSync(path, 'utf8')));"
    )
    # Passed in the environment: an argument `inspect` would start node's debugger.
    done = subprocess.run(
        [node, "--input-type=module", "-e", script],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LOUPE_SERVICE": service, "LOUPE_DOCUMENT": str(document)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("service", SERVICES)
def test_the_generated_types_match_the_running_service(
    client_package: Path, gateway: httpx.Client, service: str, tmp_path: Path
) -> None:
    answer = gateway.get(f"/openapi/{service}.json")
    assert answer.status_code == 200
    live = answer.json()
    snapshot = json.loads((PACKAGE / "openapi" / f"{service}.json").read_text())
    assert snapshot == live, (
        f"clients/ts/openapi/{service}.json differs from what the {service} service serves: "
        "regenerate (clients/ts/README.md, 'Regenerating the types')"
    )
    committed = (PACKAGE / "src" / "schema" / f"{service}.ts").read_text()
    served = tmp_path / f"{service}.json"
    served.write_bytes(answer.content)
    assert _generated(service, served) == committed, (
        f"clients/ts/src/schema/{service}.ts is not what its OpenAPI generates: regenerate"
    )
