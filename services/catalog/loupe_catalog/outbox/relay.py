"""Relays outbox rows to JetStream.

A batch is claimed with `FOR UPDATE SKIP LOCKED` (so several catalog processes relay side by
side), published with the event id as `Nats-Msg-Id`, and marked published in the same
transaction. A crash after publishing but before the mark leaves the rows pending: they are
published again, and JetStream's duplicate window drops the second copy; consumers are
idempotent by event id beyond that window.
"""

import asyncio
import json
import os
from collections.abc import Callable
from contextlib import suppress

from nats.js.client import JetStreamContext
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from loupe_catalog.outbox import repository
from loupe_shared.contracts.subjects import subject
from loupe_shared.kit.logging import get_logger

_log = get_logger("catalog.outbox")
_WAKE = "outbox_wake"


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    """A commit that wrote outbox rows wakes its relay at once (it would otherwise find them
    at its next poll, up to `idle_s` later)."""
    if session.info.pop(repository.PENDING, False):
        wake: Callable[[], None] | None = session.info.get(_WAKE)
        if wake is not None:
            wake()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(repository.PENDING, None)


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        js: JetStreamContext,
        *,
        namespace: str,
        registry: CollectorRegistry,
        batch_size: int = 200,
        idle_s: float = 1.0,
        crash_after_publish: bool = False,
    ) -> None:
        self.engine = engine
        self.js = js
        self.namespace = namespace
        self.batch_size = batch_size
        self.idle_s = idle_s
        # Fault injection for the durability test: exit between publish and mark.
        self.crash_after_publish = crash_after_publish
        self._wake = asyncio.Event()
        self._published = Counter(
            "outbox_events_published_total", "Outbox events relayed to NATS", registry=registry
        )
        self._failures = Counter(
            "outbox_relay_failures_total",
            "Relay batches that failed and will be retried",
            registry=registry,
        )

    def wake(self) -> None:
        self._wake.set()

    def wake_after_commit(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Sessions of `sessions` that write outbox rows wake this relay when they commit."""
        sessions.configure(info={_WAKE: self.wake})

    async def relay_once(self) -> int:
        async with self.engine.connect() as conn, conn.begin():
            rows = await repository.claim(conn, self.batch_size)
            if not rows:
                return 0
            for row in rows:
                await self.js.publish(
                    subject(row["subject"], self.namespace),
                    json.dumps(row["payload"], separators=(",", ":")).encode(),
                    headers={"Nats-Msg-Id": row["event_id"]},
                    timeout=5,
                )
            if self.crash_after_publish:
                os._exit(70)
            await repository.mark_published(conn, [row["id"] for row in rows])
        self._published.inc(len(rows))
        return len(rows)

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                relayed = await self.relay_once()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failures.inc()
                _log.warning("outbox.relay_failed", error=str(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if relayed == 0:
                with suppress(TimeoutError):
                    async with asyncio.timeout(self.idle_s):
                        await self._wake.wait()
                self._wake.clear()
