"""Legacy exports built the way the old frontend wrote them."""

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# A copy of the project's shared legacy export, kept with the tests so a clone runs them alone.
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy-localstorage.json"


def fixture_programs() -> list[dict[str, Any]]:
    programs: list[dict[str, Any]] = json.loads(FIXTURE.read_text())
    return programs


def image_bytes(
    ext: str = ".png", width: int = 64, height: int = 48, seed: int | None = None
) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(ext, pixels)
    assert ok
    return bytes(encoded)


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def legacy_program(
    legacy_id: str | None = None,
    name: str | None = None,
    *,
    image: str | None = None,
    threshold: int = 30,
    extra_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    config: dict[str, Any] = {
        "tools": [
            {
                "id": "tool_0",
                "type": "presence",
                "name": "Check 1",
                "roi": {"x": 10, "y": 10, "width": 40, "height": 30},
                "threshold": threshold,
                "minDefectArea": 12,
            },
            {
                "id": "tool_1",
                "type": "diff",
                "name": "Check 2",
                "roi": {"x": 0, "y": 0, "width": 20, "height": 20},
                "threshold": 20,
                "minDefectArea": 5,
            },
        ],
        "triggerMode": "internal",
        "exposure": 100,
        **(extra_config or {}),
    }
    if image is not None:
        config["masterImage"] = image
    return {
        "id": legacy_id or f"prog_{tag}",
        "name": name or f"Legacy {tag}",
        "createdAt": "2025-10-01T08:00:00.000Z",
        "updatedAt": "2025-10-01T09:30:00.000Z",
        "config": config,
    }


def renamed_fixture() -> list[dict[str, Any]]:
    """The shared fixture with ids and names of this test's own (the platform is shared)."""
    tag = uuid.uuid4().hex[:8]
    programs = fixture_programs()
    for program in programs:
        program["id"] = f"{program['id']}_{tag}"
        program["name"] = f"{program['name']} {tag}"
    return programs
