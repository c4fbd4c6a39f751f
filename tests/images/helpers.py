"""Helpers the images tests (and the catalog's and results' tests that need an image) share:
images to upload, uploads, the catalog's record of one, and the events a store published."""

import asyncio
import json
import struct
import zlib
from typing import Any

import cv2
import httpx
import numpy as np

from loupe_shared.contracts import subjects
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings


def make_image(
    ext: str = ".png", seed: int | None = None, size: tuple[int, int] = (96, 128)
) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(*size, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(ext, pixels)
    assert ok
    return bytes(encoded.tobytes())


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge image (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + b"\0" * 64
    )


def upload(client: httpx.Client, headers: dict[str, str], seed: int) -> str:
    """Upload a generated image; its hash."""
    answer = client.post("/api/images", content=make_image(seed=seed), headers=headers)
    assert answer.status_code == 201, answer.text
    sha: str = answer.json()["sha256"]
    return sha


def record(catalog: httpx.Client, headers: dict[str, str], sha: str) -> dict[str, Any] | None:
    """The catalog's record of an image, or None while it has none."""
    answer = catalog.get(f"/api/image-records/{sha}", headers=headers)
    return answer.json() if answer.status_code == 200 else None


def events(nats: NatsSettings, namespace: str, subject: str) -> list[dict[str, Any]]:
    """Every event on `subject` (an `images.` or `integrity.` subject) in `namespace`."""

    async def read() -> list[dict[str, Any]]:
        nc = await connect(nats, "tests")
        try:
            js = nc.jetstream()
            sub = await js.pull_subscribe(
                subjects.subject(subject, namespace),
                stream=subjects.stream_name("IMAGES", namespace)
                if subject.startswith("images.")
                else subjects.stream_name("INTEGRITY", namespace),
            )
            found: list[dict[str, Any]] = []
            try:
                while True:
                    batch = await sub.fetch(100, timeout=1)
                    found += [json.loads(m.data) for m in batch]
            except TimeoutError:  # nats-py raises its own subclass or the builtin
                return found
        finally:
            # Not drain(): a pull subscription that timed out keeps drain() waiting.
            await nc.close()

    return asyncio.run(read())
