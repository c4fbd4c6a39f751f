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
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from minio import Minio

from loupe_images.images import storage, thumbnails
from loupe_shared.kit import s3 as s3kit
from loupe_shared.kit.logging import get_logger

_log = get_logger("images.thumbnails")
_T = TypeVar("_T")
Entry = dict[str, Any]


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


Status = dict[str, Any]
Announce = Callable[[list[dict[str, Any]]], Awaitable[None]]


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
        # Thumbnails an upload left to follow its answer, by image.
        self._following: dict[str, asyncio.Task[Status]] = {}

    async def _in_pool(self, work: Callable[..., _T], *args: Any) -> _T:
        """`work` on the thumbnail threads, given up (TimeoutError) after the time limit."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout_s):
            return await loop.run_in_executor(self.pool, work, *args)

    async def _put(self, sha256: str, size: int, made: tuple[bytes, int, int]) -> Entry:
        webp, width, height = made
        key = storage.thumbnail_key(sha256, size)
        digest = hashlib.sha256(webp).hexdigest()
        await asyncio.to_thread(
            storage.put_bytes, self.s3, self.bucket, key, webp, "image/webp", {"sha256": digest}
        )
        return {
            "size": size,
            "key": key,
            "width": width,
            "height": height,
            "bytes": len(webp),
            "sha256": digest,
        }

    async def _record(self, sha256: str, status: Status) -> Status:
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

    def _failed(self, error: str, entries: list[Entry]) -> Status:
        return {"state": "failed", "error": error, "thumbnails": entries}

    async def generate(self, sha256: str, data: bytes, width: int, height: int) -> Status:
        """Make, store and record every size from the image's bytes."""
        entries: list[Entry] = []
        try:
            made = await self._in_pool(thumbnails.make, data, width, height)
            for size, thumb in made.items():
                entries.append(await self._put(sha256, size, thumb))
            status: Status = {"state": "done", "error": None, "thumbnails": entries}
        except TimeoutError:
            status = self._failed(f"gave up after {self.timeout_s:g} s", [])
        except thumbnails.ThumbnailError as exc:
            status = self._failed(str(exc), [])
        return await self._record(sha256, status)

    async def scale(self, data: bytes, width: int, height: int) -> dict[int, Any]:
        """Every size decoded and resized, not yet encoded (`thumbnails.scaled`): the decode
        that shows a truncated or corrupt image (`Undecodable`) before it is stored."""
        return await self._in_pool(thumbnails.scaled, data, width, height)

    async def store(self, sha256: str, scaled: dict[int, Any], *, later: set[int]) -> Status:
        """Encode, store and record the sizes not in `later`. With sizes left for later the
        status is `pending` until `follow` has made them."""
        entries: list[Entry] = []
        try:
            for size in sorted(set(scaled) - later):
                made = await self._in_pool(thumbnails.encode, scaled[size])
                entries.append(await self._put(sha256, size, made))
        except TimeoutError:
            return await self._record(
                sha256, self._failed(f"gave up after {self.timeout_s:g} s", entries)
            )
        except thumbnails.ThumbnailError as exc:
            return await self._record(sha256, self._failed(str(exc), entries))
        state = "pending" if later & set(scaled) else "done"
        return await self._record(sha256, {"state": state, "error": None, "thumbnails": entries})

    def follow(
        self, sha256: str, rest: dict[int, Any], stored: list[Entry], announce: Announce
    ) -> None:
        """Make the sizes in `rest` after the upload's answer, in a task of this process:
        store them, call `announce` with every thumbnail, record the status. Until then a
        request for one of them waits for it (`settled`)."""
        task = asyncio.create_task(
            self._follow(sha256, rest, list(stored), announce), name=f"thumbnails-{sha256[:12]}"
        )
        self._following[sha256] = task
        task.add_done_callback(lambda _: self._following.pop(sha256, None))

    async def _follow(
        self, sha256: str, rest: dict[int, Any], entries: list[Entry], announce: Announce
    ) -> Status:
        try:
            for size in sorted(rest):
                made = await self._in_pool(thumbnails.encode, rest[size])
                entries.append(await self._put(sha256, size, made))
            status: Status = {"state": "done", "error": None, "thumbnails": entries}
        except TimeoutError:
            status = self._failed(f"gave up after {self.timeout_s:g} s", entries)
        except thumbnails.ThumbnailError as exc:
            status = self._failed(str(exc), entries)
        except Exception as exc:
            # The object store went away: the status stays pending, and a request for the
            # thumbnail (or the same upload again) makes it later.
            _log.warning("images.thumbnails_deferred_failed", sha256=sha256, error=str(exc))
            return {"state": "pending", "error": None, "thumbnails": entries}
        try:
            if not await asyncio.to_thread(
                s3kit.exists, self.s3, self.bucket, storage.blob_key(sha256)
            ):
                # Deleted meanwhile: leave nothing of it behind.
                for entry in entries:
                    await asyncio.to_thread(s3kit.remove, self.s3, self.bucket, entry["key"])
                return status
            if status["state"] == "done":
                # Announced before the status says done, so a done status means announced.
                await announce(entries)
            return await self._record(sha256, status)
        except Exception as exc:
            _log.warning("images.thumbnails_deferred_failed", sha256=sha256, error=str(exc))
            return {"state": "pending", "error": None, "thumbnails": entries}

    async def settled(self, sha256: str) -> None:
        """Wait for thumbnails this process is still making for the image, if any."""
        task = self._following.get(sha256)
        if task is not None:
            await asyncio.shield(task)

    async def drain(self) -> None:
        """Wait for every thumbnail still following its upload (at shutdown, once the
        uploads are answered)."""
        await asyncio.gather(*list(self._following.values()), return_exceptions=True)

    async def record_failure(self, sha256: str, error: str) -> Status:
        return await self._record(sha256, self._failed(error, []))

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
        if data is None and image.sha256 in self._following:
            # Right after its upload: the thumbnail is being made here; wait for it.
            await self.settled(image.sha256)
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
