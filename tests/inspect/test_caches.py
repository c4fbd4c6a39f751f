"""The worker's caches: masters bounded in bytes (least recently used out first), revisions
by count, and one load for concurrent misses."""

import asyncio
import uuid

import numpy as np
import pytest

from loupe_inspect.caches import MASTER_FOOTPRINT, MasterCache, RevisionCache
from loupe_inspect.pipeline.config import InspectionConfig
from loupe_inspect.pipeline.images import PreparedMaster
from loupe_inspect.sources import ProgramRevision, Rejected


def master(name: str, side: int = 100) -> PreparedMaster:
    return PreparedMaster(name, np.zeros((side, side), np.uint8))


async def test_masters_are_bounded_in_bytes_least_recently_used_first() -> None:
    cache = MasterCache(max_bytes=3 * 100 * 100 * MASTER_FOOTPRINT)
    loads: list[str] = []

    async def load(sha: str) -> PreparedMaster:
        loads.append(sha)
        return master(sha)

    for sha in ("a", "b", "c"):
        await cache.get(sha, load)
    await cache.get("a", load)  # "a" used again: "b" is now the oldest
    await cache.get("d", load)
    assert "b" not in cache
    assert all(sha in cache for sha in ("a", "c", "d"))
    assert cache.bytes <= cache.max_bytes
    assert loads == ["a", "b", "c", "d"]
    assert (cache.hits, cache.misses) == (1, 4)


async def test_a_master_larger_than_the_cache_is_used_but_not_kept() -> None:
    cache = MasterCache(max_bytes=1000)

    async def load(sha: str) -> PreparedMaster:
        return master(sha, side=200)

    found = await cache.get("big", load)
    assert found.sha256 == "big"
    assert "big" not in cache
    assert cache.bytes == 0


async def test_concurrent_misses_share_one_load_and_failures_are_not_cached() -> None:
    cache = MasterCache(max_bytes=10**9)
    calls = 0
    release = asyncio.Event()

    async def load(sha: str) -> PreparedMaster:
        nonlocal calls
        calls += 1
        await release.wait()
        if sha == "missing":
            raise Rejected("not stored")
        return master(sha)

    waiting = [asyncio.create_task(cache.get("x", load)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert {m.sha256 for m in await asyncio.gather(*waiting)} == {"x"}
    assert calls == 1
    for _ in range(2):
        with pytest.raises(Rejected):
            await cache.get("missing", load)
    assert calls == 3


async def test_revisions_are_kept_by_number_and_current_for_a_while() -> None:
    program = uuid.uuid4()
    asked: list[str] = []

    def revision(number: int) -> ProgramRevision:
        return ProgramRevision(program, number, "ab" * 32, InspectionConfig())

    async def by_number(_: uuid.UUID, number: int) -> ProgramRevision:
        asked.append(f"#{number}")
        return revision(number)

    async def current(_: uuid.UUID) -> ProgramRevision:
        asked.append("current")
        return revision(7)

    cache = RevisionCache(size=2, current_ttl_s=60)
    for _ in range(2):
        assert (await cache.get(program, None, by_number=by_number, current=current)).revision == 7
        assert (await cache.get(program, 3, by_number=by_number, current=current)).revision == 3
    assert asked == ["current", "#3"]
    await cache.get(program, 4, by_number=by_number, current=current)
    await cache.get(program, 5, by_number=by_number, current=current)
    assert len(cache) == 2
    await cache.get(program, 3, by_number=by_number, current=current)
    assert asked[-1] == "#3"


def test_a_master_keeps_roi_references_within_its_footprint() -> None:
    prepared = master("m", side=200)
    for offset in range(20):  # twenty tools, each with an ROI of its own
        reference = prepared.roi((offset, offset, 150, 150))
        assert reference.smooth.shape == (150, 150)
    prepared.reduced(0.5)
    assert prepared.nbytes <= MASTER_FOOTPRINT * prepared.gray.nbytes
    # The first references were kept: asking again gives the same object.
    assert prepared.roi((0, 0, 150, 150)) is prepared.roi((0, 0, 150, 150))


def test_a_master_keeps_the_reference_of_an_roi_over_the_whole_image() -> None:
    prepared = master("m", side=200)
    prepared.reduced(0.25)
    reference = prepared.roi((0, 0, 200, 200))
    assert prepared.roi((0, 0, 200, 200)) is reference
    assert prepared.nbytes <= MASTER_FOOTPRINT * prepared.gray.nbytes


def test_a_master_answers_the_mean_grey_level_of_an_roi() -> None:
    gray = np.zeros((100, 100), np.uint8)
    gray[:, 50:] = 200
    prepared = PreparedMaster("m", gray)
    assert prepared.mean((0, 0, 100, 100)) == pytest.approx(100.0)
    assert prepared.mean((50, 10, 20, 20)) == pytest.approx(200.0)
    assert prepared.mean((0, 0, 50, 100)) == pytest.approx(0.0)
