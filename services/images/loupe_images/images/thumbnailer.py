"""Makes, stores and serves thumbnails; records a per-image status with the error text. Work
runs on a small dedicated thread pool, bounded in time per image, so one bad image never
stalls the others or the event loop.

Served thumbnails are kept in a small in-process cache bounded in bytes. An entry younger
than the cache's time-to-live is served as it is; an older one is served only after the
source is confirmed to exist, or — when the object store cannot be reached — served anyway,
so galleries keep working through an outage."""

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from minio import Minio

from loupe_images.images import storage, thumbnails
from loupe_shared.kit.logging import get_logger

_log = get_logger("images.thumbnails")


class ThumbnailCache:
    """Least recently used, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[str, int], tuple[bytes, float]] = OrderedDict()

    def get(self, sha256: str, size: int) -> tuple[bytes, float] | None:
        found = self._entries.get((sha256, size))
        if found is not None:
            self._entries.move_to_end((sha256, size))
        return found

    def put(self, sha256: str, size: int, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        self.discard(sha256, size)
        self._entries[(sha256, size)] = (data, time.monotonic())
        self.bytes += len(data)
        while self.bytes > self.max_bytes:
            _, (old, _) = self._entries.popitem(last=False)
            self.bytes -= len(old)

    def touch(self, sha256: str, size: int) -> None:
        found = self._entries.get((sha256, size))
        if found is not None:
            self._entries[(sha256, size)] = (found[0], time.monotonic())

    def discard(self, sha256: str, size: int | None = None) -> None:
        for each in thumbnails.SIZES if size is None else (size,):
            old = self._entries.pop((sha256, each), None)
            if old is not None:
                self.bytes -= len(old[0])


class Thumbnailer:
    def __init__(
        self,
        s3: Minio,
        bucket: str,
        *,
        workers: int,
        timeout_s: float,
        cache_bytes: int = 64 * 1024 * 1024,
        cache_ttl_s: float = 300.0,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.timeout_s = timeout_s
        self.cache = ThumbnailCache(cache_bytes)
        self.cache_ttl_s = cache_ttl_s
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
                digest = hashlib.sha256(webp).hexdigest()
                await asyncio.to_thread(
                    storage.put_bytes,
                    self.s3,
                    self.bucket,
                    key,
                    webp,
                    "image/webp",
                    {"sha256": digest},
                )
                entries.append(
                    {
                        "size": size,
                        "key": key,
                        "width": w,
                        "height": h,
                        "bytes": len(webp),
                        "sha256": digest,
                    }
                )
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
        # Written last: a status names only thumbnails that are stored.
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

    def cached(self, sha256: str, size: int) -> tuple[bytes, bool] | None:
        """A cached thumbnail and whether it is still fresh (servable without asking S3)."""
        found = self.cache.get(sha256, size)
        if found is None:
            return None
        data, stored_at = found
        return data, time.monotonic() - stored_at < self.cache_ttl_s

    async def get(self, image: storage.StoredImage, size: int) -> bytes | None:
        """The thumbnail, regenerated from the source when it is missing."""
        key = storage.thumbnail_key(image.sha256, size)
        data = await asyncio.to_thread(storage.get_bytes, self.s3, self.bucket, key)
        if data is None:
            source = await asyncio.to_thread(
                storage.get_bytes, self.s3, self.bucket, storage.blob_key(image.sha256)
            )
            if source is None:
                return None
            status = await self.generate(image.sha256, source, image.width, image.height)
            if status["state"] != "done":
                return None
            data = await asyncio.to_thread(storage.get_bytes, self.s3, self.bucket, key)
        if data is not None:
            self.cache.put(image.sha256, size, data)
        return data

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
