"""Makes, stores and serves thumbnails; records a per-image status with the error text. Work
runs on a small dedicated thread pool, bounded in time per image, so one bad image never
stalls the others or the event loop."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from minio import Minio

from loupe_images.images import storage, thumbnails
from loupe_shared.kit.logging import get_logger

_log = get_logger("images.thumbnails")


class Thumbnailer:
    def __init__(self, s3: Minio, bucket: str, *, workers: int, timeout_s: float) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.timeout_s = timeout_s
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="thumbnails")

    async def generate(self, sha256: str, data: bytes, width: int, height: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            made = await asyncio.wait_for(
                loop.run_in_executor(self.pool, thumbnails.make, data, width, height),
                self.timeout_s,
            )
            entries = []
            for size, (webp, w, h) in made.items():
                key = storage.thumbnail_key(sha256, size)
                await asyncio.to_thread(
                    storage.put_bytes, self.s3, self.bucket, key, webp, "image/webp"
                )
                entries.append({"size": size, "key": key, "width": w, "height": h})
            status: dict[str, Any] = {"state": "done", "error": None, "thumbnails": entries}
        except TimeoutError:
            status = {
                "state": "failed",
                "error": f"gave up after {self.timeout_s:g} s",
                "thumbnails": [],
            }
        except thumbnails.ThumbnailError as exc:
            status = {"state": "failed", "error": str(exc), "thumbnails": []}
        if status["state"] == "failed":
            _log.warning("images.thumbnails_failed", sha256=sha256, error=status["error"])
        await asyncio.to_thread(
            storage.put_bytes,
            self.s3,
            self.bucket,
            storage.status_key(sha256),
            json.dumps(status).encode(),
            "application/json",
        )
        return status

    async def status(self, sha256: str) -> dict[str, Any] | None:
        raw = await asyncio.to_thread(
            storage.get_bytes, self.s3, self.bucket, storage.status_key(sha256)
        )
        if raw is None:
            return None
        found: dict[str, Any] = json.loads(raw)
        return found

    async def get(self, image: storage.StoredImage, size: int) -> bytes | None:
        """The thumbnail, regenerated from the source when it is missing."""
        key = storage.thumbnail_key(image.sha256, size)
        cached = await asyncio.to_thread(storage.get_bytes, self.s3, self.bucket, key)
        if cached is not None:
            return cached
        source = await asyncio.to_thread(
            storage.get_bytes, self.s3, self.bucket, storage.blob_key(image.sha256)
        )
        if source is None:
            return None
        status = await self.generate(image.sha256, source, image.width, image.height)
        if status["state"] != "done":
            return None
        return await asyncio.to_thread(storage.get_bytes, self.s3, self.bucket, key)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
