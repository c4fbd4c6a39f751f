"""Helpers for catalog tests: image records arrive the real way, as `images.stored` events."""

import asyncio
import hashlib
import os
import uuid
from typing import Any

import httpx

from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import ImageStored
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings
from tests.conftest import auth
from tests.support import eventually


def random_sha() -> str:
    return hashlib.sha256(os.urandom(16)).hexdigest()


def publish(
    settings: NatsSettings, subject: str, payload: bytes, headers: dict[str, str] | None = None
) -> None:
    async def send() -> None:
        nc = await connect(settings, "tests")
        try:
            await nc.jetstream().publish(subject, payload, headers=headers)
        finally:
            await nc.drain()

    asyncio.run(send())


def stored_image(
    settings: NatsSettings, gateway: httpx.Client, token: str, sha: str | None = None
) -> str:
    """Announce an image like the images service does and wait until the catalog has it."""
    sha = sha or random_sha()
    event = ImageStored(
        sha256=sha, size=1234, width=640, height=480, content_type="image/png", kind="master"
    )
    publish(
        settings,
        subjects.IMAGES_STORED,
        event.model_dump_json().encode(),
        {"Nats-Msg-Id": event.event_id},
    )
    eventually(
        "image record",
        lambda: gateway.get(f"/api/image-records/{sha}", headers=auth(token)).status_code == 200,
        timeout_s=10,
    )
    return sha


def config_v3(threshold: float = 25.0, width: int = 120) -> dict[str, Any]:
    return {
        "schema_version": 3,
        "tools": [
            {
                "id": "tool_0",
                "name": "Scratch",
                "type": "difference",
                "roi": {"x": 10, "y": 20, "width": width, "height": 90},
                "threshold": threshold,
                "min_defect_area": 30,
            },
            {
                "id": "tool_1",
                "type": "presence",
                "roi": {"x": 0, "y": 0, "width": 50, "height": 50},
                "threshold": 40,
                "min_defect_area": 10,
            },
        ],
    }


def new_program(name: str | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name or f"Program {uuid.uuid4().hex[:8]}",
        "description": "test",
        "tags": ["test"],
        "config": config_v3(),
        **overrides,
    }


def named(client: httpx.Client, headers: dict[str, str], name: str) -> list[dict[str, Any]]:
    """The programs called exactly `name`."""
    answer = client.get("/api/programs", params={"q": name, "limit": 200}, headers=headers)
    assert answer.status_code == 200, answer.text
    return [p for p in answer.json()["items"] if p["name"] == name]
