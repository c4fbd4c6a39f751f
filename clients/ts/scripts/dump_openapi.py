"""Write each service's OpenAPI document to <outdir>/<service>.json without starting it.

Run from the repository's virtualenv: `python clients/ts/scripts/dump_openapi.py <outdir>`.
The live services serve the same documents at `/openapi/<service>.json` through the gateway.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _catalog() -> dict[str, Any]:
    from loupe_catalog.app import build
    from loupe_catalog.settings import CatalogSettings

    return build(CatalogSettings()).openapi()


def _images() -> dict[str, Any]:
    from loupe_images.app import build
    from loupe_images.settings import ImagesSettings

    return build(ImagesSettings()).openapi()


def _backup() -> dict[str, Any]:
    from loupe_backup.app import build
    from loupe_backup.settings import BackupSettings

    return build(BackupSettings()).openapi()


def _inspect() -> dict[str, Any]:
    from loupe_inspect.app import build
    from loupe_inspect.settings import InspectSettings

    return build(InspectSettings()).openapi()


SERVICES: dict[str, Callable[[], dict[str, Any]]] = {
    "catalog": _catalog,
    "images": _images,
    "backup": _backup,
    "inspect": _inspect,
}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: dump_openapi.py <outdir>", file=sys.stderr)
        return 2
    outdir = Path(argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    for name, build_document in SERVICES.items():
        document = build_document()
        (outdir / f"{name}.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
