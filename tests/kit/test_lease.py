"""Leases on a real NATS server: one holder at a time, renewal, takeover after a holder stops
renewing, stale renewals refused, unreadable records survived."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.aio.client import Client
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from loupe_shared.contracts.streams import LEASES_BUCKET
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit.lease import LeaseLost, Leases, LeaseTaken, ensure_bucket
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import LeaseSettings, NatsSettings

TTL_S = 1.0


@pytest.fixture
async def nc(nats_settings: NatsSettings) -> AsyncIterator[Client]:
    client = await connect(nats_settings, "test-lease")
    try:
        yield client
    finally:
        await client.drain()


@pytest.fixture
async def bucket(nc: Client) -> AsyncIterator[str]:
    name = stream_name(LEASES_BUCKET, f"l{uuid.uuid4().hex[:8]}")
    await ensure_bucket(nc.jetstream(), name)
    try:
        yield name
    finally:
        await nc.jetstream().delete_key_value(name)


def _leases(
    nc: Client, bucket: str, instance: str, registry: CollectorRegistry | None = None
) -> Leases:
    return Leases(
        nc.jetstream(),
        bucket,
        service="test",
        ttl_s=TTL_S,
        registry=registry,
        instance=instance,
    )


def _held(registry: CollectorRegistry, name: str, holder: str) -> float | None:
    return registry.get_sample_value("leases_held", {"name": name, "holder": holder})


async def test_two_holders_race_and_exactly_one_wins(nc: Client, bucket: str) -> None:
    contenders = [_leases(nc, bucket, f"replica-{i}") for i in range(4)]
    outcomes = await asyncio.gather(
        *(c.acquire("job.race") for c in contenders), return_exceptions=True
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(won) == 1
    refused = [o for o in outcomes if isinstance(o, LeaseTaken)]
    assert len(refused) == 3
    winner = contenders[outcomes.index(won[0])]
    assert all(r.holder is not None and r.holder.holder == winner.holder for r in refused)


async def test_renewal_keeps_the_lease_past_its_ttl(nc: Client, bucket: str) -> None:
    registry = CollectorRegistry()
    first = _leases(nc, bucket, "first", registry)
    second = _leases(nc, bucket, "second")
    ran = asyncio.Event()

    async def work() -> str:
        ran.set()
        # Three TTLs: only renewals keep the lease this long.
        await asyncio.sleep(3 * TTL_S)
        return "done"

    holding = asyncio.create_task(first.run("job.renewed", work))
    await ran.wait()
    assert _held(registry, "job.renewed", first.holder) == 1
    deadline = time.monotonic() + 3 * TTL_S - 0.3
    while time.monotonic() < deadline:
        with pytest.raises(LeaseTaken):
            await second.acquire("job.renewed")
        await asyncio.sleep(0.2)
    assert await holding == "done"
    # Released when the work ended: the other takes it at once.
    assert _held(registry, "job.renewed", first.holder) == 0
    held = await second.acquire("job.renewed")
    await second.release(held)


async def test_a_holder_that_stops_renewing_loses_it_and_the_other_takes_over(
    nc: Client, bucket: str
) -> None:
    stopped = _leases(nc, bucket, "stopped")
    other = _leases(nc, bucket, "other")
    held = await stopped.acquire("job.takeover")  # never renewed: a process that froze
    with pytest.raises(LeaseTaken):
        await other.acquire("job.takeover")
    started = time.monotonic()
    while True:
        try:
            taken = await other.acquire("job.takeover")
            break
        except LeaseTaken:
            assert time.monotonic() - started < 4 * TTL_S, "not taken over in time"
            await asyncio.sleep(0.05)
    # Taken over no sooner than the holder's own deadline passed.
    assert time.monotonic() >= held.deadline
    # The stale holder's renewal is refused: it learns it lost the lease.
    with pytest.raises(LeaseLost):
        await stopped.renew(held)
    await other.release(taken)


async def test_lost_lease_cancels_the_work_it_guards(nc: Client, bucket: str) -> None:
    registry = CollectorRegistry()
    holder = _leases(nc, bucket, "holder", registry)
    cancelled = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    held = await holder.acquire("job.stolen")
    running = asyncio.create_task(holder.hold(held, work))
    # Another writer replaces the record (an operator, a bug): the next renewal sees it.
    kv: KeyValue = await nc.jetstream().key_value(bucket)
    await kv.put("job.stolen", b"{}")
    with pytest.raises(LeaseLost):
        await asyncio.wait_for(running, 3 * TTL_S)
    assert cancelled.is_set()
    assert _held(registry, "job.stolen", holder.holder) == 0


async def test_a_stale_revision_cannot_renew(nc: Client, bucket: str) -> None:
    leases = _leases(nc, bucket, "only")
    held = await leases.acquire("job.stale")
    first = held.revision
    await leases.renew(held)
    assert held.revision > first
    stale = type(held)(held.name, first, held.acquired_at, held.deadline)
    # The record at a newer revision is still this holder's: a renewal whose answer was lost.
    await leases.renew(stale)
    assert stale.revision == held.revision
    # Another holder's record at a newer revision: refused.
    kv: KeyValue = await nc.jetstream().key_value(bucket)
    other = _leases(nc, bucket, "other")
    await kv.put("job.stale", other._record(held.acquired_at))
    with pytest.raises(LeaseLost):
        await leases.renew(held)


@pytest.mark.parametrize(
    "value",
    [b"", b"not json", b'{"holder": 3}', b"[1, 2]", b'{"holder": "x", "ttl_s": "soon"}'],
)
async def test_an_unreadable_record_is_held_by_nobody_known_and_expires(
    nc: Client, bucket: str, value: bytes
) -> None:
    kv: KeyValue = await nc.jetstream().key_value(bucket)
    await kv.put("job.corrupt", value)
    leases = _leases(nc, bucket, "reader")
    with pytest.raises(LeaseTaken) as taken:
        await leases.acquire("job.corrupt")
    assert taken.value.holder is None
    assert (await leases.observe("job.corrupt")).state == "live"
    await asyncio.sleep(TTL_S)
    held = await leases.acquire("job.corrupt")
    assert (await leases.observe("job.corrupt")).record is not None
    await leases.release(held)
    assert (await leases.observe("job.corrupt")).state == "absent"


async def test_periodic_work_runs_on_one_holder_at_a_time(nc: Client, bucket: str) -> None:
    runs: list[str] = []
    six = asyncio.Event()
    active = 0
    overlapped = False

    def worker(name: str) -> Callable[[], Awaitable[None]]:
        async def work() -> None:
            nonlocal active, overlapped
            active += 1
            overlapped = overlapped or active > 1
            runs.append(name)
            await asyncio.sleep(0.3)
            active -= 1
            if len(runs) >= 6:
                six.set()

        return work

    async def due() -> bool:
        return len(runs) < 6

    replicas = [_leases(nc, bucket, f"r{i}") for i in range(2)]
    loops = [
        asyncio.create_task(
            r.periodically("job.periodic", worker(r.instance), due=due, poll_s=0.05, event="x")
        )
        for r in replicas
    ]
    try:
        await asyncio.wait_for(six.wait(), 30)
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
    assert not overlapped
    assert len(runs) == 6


def test_lease_settings_are_bounded() -> None:
    assert LeaseSettings().lease_renew_every_s() == pytest.approx(5.0)
    for bad in ({"lease_ttl_s": 0.1}, {"lease_ttl_s": 1e6}, {"lease_ttl_s": 3, "lease_renew_s": 2}):
        with pytest.raises(ValidationError):
            LeaseSettings.model_validate(bad)
