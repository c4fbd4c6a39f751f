"""In-memory caches of a worker: program revisions (immutable, so kept until evicted) and
prepared master images (an LRU bounded in bytes, keyed by SHA-256). Concurrent requests for
the same missing entry share one load."""

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from loupe_inspect.pipeline.images import PreparedMaster
from loupe_inspect.sources import ProgramRevision

K = TypeVar("K")
V = TypeVar("V")
# What a master costs in the cache, as a multiple of its decoded size: its reduced copies
# and the references of its ROIs come on top, up to PreparedMaster.EXTRA_FOOTPRINT times.
MASTER_FOOTPRINT = 1 + PreparedMaster.EXTRA_FOOTPRINT


class _SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._loading[key]


class RevisionCache:
    def __init__(self, size: int, current_ttl_s: float) -> None:
        self._size = size
        self._ttl_s = current_ttl_s
        self._revisions: OrderedDict[tuple[uuid.UUID, int], ProgramRevision] = OrderedDict()
        self._current: dict[uuid.UUID, tuple[float, int]] = {}
        self._flight: _SingleFlight[tuple[uuid.UUID, int | None], ProgramRevision] = _SingleFlight()

    def _put(self, found: ProgramRevision) -> None:
        key = (found.program_id, found.revision)
        self._revisions[key] = found
        self._revisions.move_to_end(key)
        while len(self._revisions) > self._size:
            self._revisions.popitem(last=False)

    async def get(
        self,
        program_id: uuid.UUID,
        number: int | None,
        *,
        by_number: Callable[[uuid.UUID, int], Awaitable[ProgramRevision]],
        current: Callable[[uuid.UUID], Awaitable[ProgramRevision]],
    ) -> ProgramRevision:
        if number is None:
            known = self._current.get(program_id)
            if known is not None and time.monotonic() - known[0] < self._ttl_s:
                number = known[1]
        if number is not None:
            cached = self._revisions.get((program_id, number))
            if cached is not None:
                self._revisions.move_to_end((program_id, number))
                return cached

        async def load() -> ProgramRevision:
            if number is None:
                found = await current(program_id)
                self._current[program_id] = (time.monotonic(), found.revision)
            else:
                found = await by_number(program_id, number)
            self._put(found)
            return found

        return await self._flight.run((program_id, number), load)

    def __len__(self) -> int:
        return len(self._revisions)


class MasterCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, PreparedMaster] = OrderedDict()
        self._bytes = 0
        self._flight: _SingleFlight[str, PreparedMaster] = _SingleFlight()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def cost(master: PreparedMaster) -> int:
        return master.gray.nbytes * MASTER_FOOTPRINT

    @property
    def bytes(self) -> int:
        return self._bytes

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, master: PreparedMaster) -> None:
        if master.sha256 in self._entries:
            return
        cost = self.cost(master)
        if cost > self.max_bytes:
            return  # used once, never kept
        while self._entries and self._bytes + cost > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= self.cost(evicted)
        self._entries[master.sha256] = master
        self._bytes += cost

    async def get(
        self, sha256: str, load: Callable[[str], Awaitable[PreparedMaster]]
    ) -> PreparedMaster:
        found = self._entries.get(sha256)
        if found is not None:
            self.hits += 1
            self._entries.move_to_end(sha256)
            return found
        self.misses += 1

        async def load_and_keep() -> PreparedMaster:
            master = await load(sha256)
            self.put(master)
            return master

        return await self._flight.run(sha256, load_and_keep)
