"""Notices of stored results, for readers that wait for new ones (`GET /api/results?wait=`).

Every ingester (in a catalog replica or on its own) publishes `notice.results.stored` on core
NATS after each commit; every catalog replica listens and wakes the readers waiting on it, so
a reader is answered within a few milliseconds of the commit whichever process stored the
results. A notice is sent at most once (no stream keeps it): a waiting reader also looks again
every `RECHECK_S`, so a lost notice costs it that long at most, never a result.
"""

import asyncio
from contextlib import suppress

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import CollectorRegistry, Counter, Gauge

from loupe_shared.contracts import subjects

RECHECK_S = 1.0


class StoredNotices:
    def __init__(self, nc: Client, namespace: str, registry: CollectorRegistry) -> None:
        self.nc = nc
        self.waiting = Gauge(
            "results_readers_waiting",
            "Readers of GET /api/results waiting for new results (`wait`)",
            registry=registry,
        )
        self.heard = Counter(
            "results_stored_notices",
            "Notices that results were stored, heard from the ingesters (each wakes the "
            "waiting readers)",
            registry=registry,
        )
        self.subject = subjects.subject(subjects.NOTICE_RESULTS_STORED, namespace)
        self.generation = 0
        self.closing = False
        self._changed = asyncio.Event()
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self.nc.subscribe(self.subject, cb=self._on_notice)

    async def stop(self) -> None:
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            with suppress(Exception):
                await subscription.unsubscribe()

    async def _on_notice(self, _: Msg) -> None:
        self.heard.inc()
        self.changed()

    def close(self) -> None:
        """The server is shutting down: every waiting reader is answered now, and none
        waits from here on."""
        self.closing = True
        self.changed()

    def changed(self) -> None:
        """Wake every reader waiting now."""
        self.generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_after(self, generation: int, timeout_s: float) -> None:
        """Return once results were stored after `generation` was read (at once when they
        were already), or after `timeout_s`."""
        if self.generation != generation or timeout_s <= 0 or self.closing:
            return
        with self.waiting.track_inprogress(), suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), min(timeout_s, RECHECK_S))


async def announce(nc: Client, namespace: str) -> None:
    """Tell the catalog replicas that results were stored (at most once; see above)."""
    with suppress(Exception):
        await nc.publish(subjects.subject(subjects.NOTICE_RESULTS_STORED, namespace), b"")
