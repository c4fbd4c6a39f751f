"""Leases: work that one replica of a service runs at a time (a scrub, a collection, a backup
schedule), held in a NATS key-value bucket every replica shares.

A lease is one key (`images.scrub`, `backup.jobs.<id>`) whose record names its holder. It is
taken by creating the key, or by replacing, revision-checked, a record that has expired; it
is renewed every `renew_s` by writing the record again with `last=` the revision the holder
wrote before, so a holder whose lease was taken over can never renew it.

Expiry never trusts another machine's clock alone. A holder counts its lease lost when
`ttl_s` has passed since it *sent* its last renewal that was acknowledged (or at once when a
renewal finds another revision), and cancels the work it guards. Another replica takes the
lease over when it has seen the same revision for the record's `ttl_s` on its own monotonic
clock; since the holder sent that revision before it was seen, the holder stopped first. A
record whose wall-clock `expires_at` is more than one further `ttl_s` past is taken at once
(a holder dead for long, seen by a process that just started). A record that does not read
as one (truncated, edited, another version's) is held by an unknown holder and expires the
same way; reading it is never an error.

The bucket (`LOUPE_LEASES` in the installation's namespace) is created by set-up with the
streams' replicas; its `max_age` only clears keys left behind by holders that died.
Held leases are the gauge `leases_held{name,holder}`; `lease.acquired`, `lease.taken_over`,
`lease.lost` and `lease.released` are logged.
"""

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar

from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry, Gauge
from pydantic import BaseModel, ValidationError

from loupe_shared.contracts.streams import LEASES_BUCKET, TOKENS_BUCKET
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.settings import MAX_TTL_S, MIN_TTL_S
from loupe_shared.kit.tasks import stopped

_log = get_logger("loupe.lease")
T = TypeVar("T")

# Keys no holder renewed for this long are removed by the server (a lease renews every few
# seconds, so only the leftovers of dead holders ever reach it).
BUCKET_MAX_AGE_S = 24 * 3600.0
# One call to the bucket never waits longer than this (a holder's renewal also no longer
# than what is left of its lease).
CALL_TIMEOUT_S = 5.0


def bucket_for(tokens_bucket: str) -> str:
    """The lease bucket in the same namespace as the token bucket `tokens_bucket`."""
    return tokens_bucket.removesuffix(TOKENS_BUCKET) + LEASES_BUCKET


async def ensure_bucket(js: JetStreamContext, bucket: str, replicas: int = 1) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(
            bucket=bucket,
            history=1,
            ttl=BUCKET_MAX_AGE_S,
            replicas=replicas,
            description="Loupe leases: work one replica runs at a time",
        )


class LeaseRecord(BaseModel):
    holder: str
    service: str
    instance: str
    ttl_s: float
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime


class LeaseTaken(Exception):
    """Another holder has the lease (`holder` is its record, None when it does not read)."""

    def __init__(self, name: str, holder: LeaseRecord | None) -> None:
        who = holder.instance if holder is not None else "an unknown holder"
        super().__init__(f"lease {name} is held by {who}")
        self.name = name
        self.holder = holder


class LeaseLost(Exception):
    """The lease could not be renewed in time, or was taken over: its work was cancelled."""


@dataclass
class Held:
    name: str
    revision: int
    acquired_at: datetime
    # Monotonic time by which the lease must be renewed, or it is lost.
    deadline: float


LeaseState = Literal["absent", "live", "expired"]


@dataclass(frozen=True)
class Observed:
    state: LeaseState
    record: LeaseRecord | None
    revision: int


class Leases:
    """This process's leases in one bucket. `holder` tells it from every other process."""

    def __init__(
        self,
        js: JetStreamContext,
        bucket: str,
        *,
        service: str,
        ttl_s: float,
        renew_s: float | None = None,
        registry: CollectorRegistry | None = None,
        instance: str | None = None,
    ) -> None:
        if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
            raise ValueError(f"a lease's ttl_s is between {MIN_TTL_S} and {MAX_TTL_S}")
        renew = ttl_s / 3 if renew_s is None else renew_s
        if not 0 < renew <= ttl_s / 2:
            raise ValueError("a lease is renewed at least twice within its ttl_s")
        self.js = js
        self.bucket = bucket
        self.service = service
        self.ttl_s = ttl_s
        self.renew_s = renew
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self.holder = f"{service}-{uuid.uuid4().hex[:12]}"
        self._kv: KeyValue | None = None
        # Per key, the revision last seen and when (monotonic) it was first seen.
        self._seen: dict[str, tuple[int, float]] = {}
        self._gauge = Gauge(
            "leases_held",
            "Leases this process holds (1) or held and gave up or lost (0), by name",
            ["name", "holder"],
            registry=registry if registry is not None else CollectorRegistry(),
        )

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                self._kv = await ensure_bucket(self.js, self.bucket)
        return self._kv

    def _record(self, acquired_at: datetime) -> bytes:
        at = datetime.now(UTC)
        return (
            LeaseRecord(
                holder=self.holder,
                service=self.service,
                instance=self.instance,
                ttl_s=self.ttl_s,
                acquired_at=acquired_at,
                renewed_at=at,
                expires_at=at + timedelta(seconds=self.ttl_s),
            )
            .model_dump_json()
            .encode()
        )

    # --- reading -------------------------------------------------------------------------------

    async def observe(self, name: str) -> Observed:
        """Whether `name` is held by a live holder, as far as this process can tell now."""
        kv = await self._bucket()
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                entry = await kv.get(name)
        except KeyNotFoundError:
            self._seen.pop(name, None)
            return Observed("absent", None, 0)
        revision = entry.revision or 0
        record = _parse(entry.value)
        seen = self._seen.get(name)
        if seen is None or seen[0] != revision:
            seen = (revision, time.monotonic())
            self._seen[name] = seen
        ttl = _bounded(record.ttl_s) if record is not None else self.ttl_s
        unchanged_for = time.monotonic() - seen[1]
        stale = record is not None and datetime.now(UTC) > record.expires_at + timedelta(
            seconds=ttl
        )
        state: LeaseState = "expired" if unchanged_for >= ttl or stale else "live"
        return Observed(state, record, revision)

    # --- holding -------------------------------------------------------------------------------

    async def acquire(self, name: str) -> Held:
        """Take the lease; raises `LeaseTaken` while another holder has it."""
        kv = await self._bucket()
        acquired_at = datetime.now(UTC)
        sent = time.monotonic()
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                revision = await kv.create(name, self._record(acquired_at))
            event = "lease.acquired"
        except KeyWrongLastSequenceError:
            found = await self.observe(name)
            if found.state == "live":
                raise LeaseTaken(name, found.record) from None
            sent = time.monotonic()
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    if found.state == "absent":
                        revision = await kv.create(name, self._record(acquired_at))
                    else:
                        revision = await kv.update(
                            name, self._record(acquired_at), last=found.revision
                        )
            except KeyWrongLastSequenceError:
                raise LeaseTaken(name, found.record) from None
            event = "lease.acquired" if found.state == "absent" else "lease.taken_over"
            if found.state == "expired":
                previous = found.record
                _log.warning(
                    event,
                    lease=name,
                    holder=self.holder,
                    previous_holder=previous.holder if previous else None,
                    previous_instance=previous.instance if previous else None,
                )
        if event == "lease.acquired":
            _log.info(event, lease=name, holder=self.holder, instance=self.instance)
        self._seen.pop(name, None)
        self._gauge.labels(name, self.holder).set(1)
        return Held(name, revision, acquired_at, sent + self.ttl_s)

    async def renew(self, held: Held) -> None:
        """Write the record again on the revision this holder wrote; raises `LeaseLost` when
        another revision is there (the lease was taken over)."""
        kv = await self._bucket()
        sent = time.monotonic()
        left = held.deadline - sent
        if left <= 0:
            raise LeaseLost(f"lease {held.name} expired before it could be renewed")
        try:
            async with asyncio.timeout(min(left, CALL_TIMEOUT_S)):
                held.revision = await kv.update(
                    held.name, self._record(held.acquired_at), last=held.revision
                )
        except KeyWrongLastSequenceError:
            # An earlier renewal may have been written with its answer lost: the record is
            # then still ours, at a newer revision.
            try:
                async with asyncio.timeout(min(left, CALL_TIMEOUT_S)):
                    entry = await kv.get(held.name)
            except KeyNotFoundError:
                raise LeaseLost(f"lease {held.name} was removed") from None
            record = _parse(entry.value)
            if record is None or record.holder != self.holder:
                raise LeaseLost(f"lease {held.name} was taken over") from None
            held.revision = entry.revision or 0
            return
        held.deadline = sent + self.ttl_s

    async def keep(self, held: Held) -> None:
        """Renew every `renew_s` until cancelled; returns when the lease is lost."""
        while True:
            await asyncio.sleep(min(self.renew_s, max(0.0, held.deadline - time.monotonic())))
            try:
                await self.renew(held)
            except asyncio.CancelledError:
                raise
            except LeaseLost as exc:
                self._lost(held, str(exc))
                return
            except Exception as exc:
                if time.monotonic() >= held.deadline:
                    self._lost(held, f"not renewed in time: {str(exc) or type(exc).__name__}")
                    return
                _log.warning(
                    "lease.renewal_failed", lease=held.name, error=str(exc) or type(exc).__name__
                )

    def _lost(self, held: Held, why: str) -> None:
        self._gauge.labels(held.name, self.holder).set(0)
        _log.error("lease.lost", lease=held.name, holder=self.holder, reason=why)

    async def release(self, held: Held) -> None:
        """Give the lease up (only the revision this holder wrote is removed)."""
        self._gauge.labels(held.name, self.holder).set(0)
        try:
            kv = await self._bucket()
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await kv.delete(held.name, last=held.revision)
        except Exception as exc:
            # Another holder's record, or the bucket cannot be reached: it expires by itself.
            _log.warning("lease.release_failed", lease=held.name, error=str(exc) or repr(exc))
        else:
            _log.info("lease.released", lease=held.name, holder=self.holder)

    async def hold(self, held: Held, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` while renewing `held`, then release it. When the lease is lost the
        work is cancelled and `LeaseLost` raised."""
        task = asyncio.ensure_future(work())
        keeper = asyncio.create_task(self.keep(held), name=f"lease-{held.name}")
        lost = False
        try:
            await asyncio.wait({task, keeper}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            lost = True
            raise LeaseLost(f"lease {held.name} was lost; its work was cancelled")
        finally:
            try:
                # Waited for without taking their outcome: a cancellation of this task while
                # it waits must reach the caller, never be taken for theirs.
                await stopped([task, keeper])
            finally:
                for running in (task, keeper):
                    if running.done() and not running.cancelled():
                        running.exception()  # seen: what the work raised while stopping
                if not lost:
                    await self.release(held)

    async def run(self, name: str, work: Callable[[], Awaitable[T]]) -> T:
        """`work` under the lease `name`: `LeaseTaken` when another holder has it."""
        return await self.hold(await self.acquire(name), work)

    async def lead(
        self, name: str, work: Callable[[], Awaitable[object]], *, poll_s: float, event: str
    ) -> None:
        """Hold the lease `name` whenever it can be had, running `work` (a loop) while it is
        held; look again every `poll_s` while another holder has it, until cancelled."""
        while True:
            try:
                await self.run(name, work)
            except asyncio.CancelledError:
                raise
            except (LeaseTaken, LeaseLost):
                pass
            except Exception as exc:
                _log.warning(event, lease=name, error=str(exc) or type(exc).__name__)
            await asyncio.sleep(poll_s)

    async def periodically(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        *,
        due: Callable[[], Awaitable[bool]],
        poll_s: float,
        event: str,
    ) -> None:
        """Every `poll_s`, run `work` under the lease `name` when `due()` says so, asked again
        once the lease is held (another replica may just have done it). Failures are logged
        as `event` and tried again at the next poll."""
        while True:
            await asyncio.sleep(poll_s)
            try:
                if await due():
                    await self.run(name, lambda: _when(due, work))
            except asyncio.CancelledError:
                raise
            except LeaseTaken:
                pass
            except Exception as exc:
                _log.warning(event, lease=name, error=str(exc) or type(exc).__name__)


async def _when(due: Callable[[], Awaitable[bool]], work: Callable[[], Awaitable[object]]) -> None:
    if await due():
        await work()


def _bounded(ttl_s: float) -> float:
    return min(max(ttl_s, MIN_TTL_S), MAX_TTL_S)


def _parse(value: bytes | None) -> LeaseRecord | None:
    try:
        return LeaseRecord.model_validate_json(value or b"")
    except (ValidationError, ValueError):
        return None
