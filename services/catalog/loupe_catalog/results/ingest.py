"""Durable ingest of `results.recorded` into PostgreSQL.

A pull consumer (`catalog-results-ingest`, shared by any number of ingesters) fetches a
batch of messages; their results are COPYed into a session-local staging table and moved
with `INSERT ... ON CONFLICT DO NOTHING` in one transaction; the messages are acknowledged
only after the commit. A crash before the commit leaves them unacknowledged (redelivered
after `ACK_WAIT_S`); a crash after the commit and before the acknowledgements redelivers
rows that are already there, which the insert skips. A message that breaks the contract, or
whose rows PostgreSQL refuses, goes to `deadletter.results` with the reason and never blocks
the stream.
"""

import asyncio
import time
from contextlib import suppress

import asyncpg
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Histogram

from loupe_catalog.results import partitions
from loupe_catalog.results.rows import COLUMNS, Malformed, Row, rows
from loupe_shared.contracts import subjects
from loupe_shared.kit import db
from loupe_shared.kit.consumers import WriteFence, dead_letter, fenced, is_passing
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.settings import DatabaseSettings

_log = get_logger("catalog.results.ingest")
DURABLE = "catalog-results-ingest"
ACK_WAIT_S = 10
# A message delivered this often without being stored (each ingester died on it) is set
# aside; a database outage does not count, as nothing is fetched while it lasts.
MAX_DELIVERIES = 20
PARTITIONS_EVERY_S = 6 * 3600
_COLUMNS = ", ".join(COLUMNS)
_MOVE = (
    f"INSERT INTO results ({_COLUMNS}) SELECT {_COLUMNS} FROM results_staging "  # noqa: S608
    "ON CONFLICT (result_id, captured_at) DO NOTHING"
)


class Ingester:
    def __init__(
        self,
        database: DatabaseSettings,
        js: JetStreamContext,
        *,
        namespace: str,
        registry: CollectorRegistry,
        fetch_messages: int = 100,
        fence: WriteFence | None = None,
    ) -> None:
        self.database = database
        self.fence = fence
        self.js = js
        self.namespace = namespace
        self.fetch_messages = fetch_messages
        self.ingested = Counter(
            "results_ingested_total", "Results written to the database", registry=registry
        )
        self.duplicates = Counter(
            "results_duplicates_total",
            "Results received again and skipped (already stored)",
            registry=registry,
        )
        self.dead_lettered = Counter(
            "results_dead_lettered_total",
            "Result messages set aside on deadletter.results, by reason",
            ["reason"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "results_ingest_batch_seconds", "Time to store one fetched batch", registry=registry
        )

    async def run(self) -> None:
        """Ingest until cancelled; a lost database or NATS connection is retried."""
        while True:
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("results.ingest_restarting", error=str(exc))
                await asyncio.sleep(1)

    async def _connect(self) -> asyncpg.Connection:
        conn = await db.connect(self.database, "loupe-results-ingest")
        await conn.execute(
            "CREATE TEMP TABLE results_staging (LIKE results INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
        return conn

    async def _run(self) -> None:
        conn = await self._connect()
        subscription = None
        try:
            await partitions.ensure(conn)
            partitions_at = time.monotonic()
            subscription = await self.js.pull_subscribe(
                subjects.subject(subjects.RESULTS_RECORDED, self.namespace),
                durable=DURABLE,
                stream=subjects.stream_name("RESULTS", self.namespace),
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=ACK_WAIT_S,
                    max_ack_pending=20_000,
                ),
            )
            _log.info("results.ingest_started")
            while True:
                if time.monotonic() - partitions_at > PARTITIONS_EVERY_S:
                    await partitions.ensure(conn)
                    partitions_at = time.monotonic()
                # Fenced: a restore takes its restore point only once no batch is under way,
                # and none starts until it is over (the stream keeps what arrives meanwhile).
                async with fenced(self.fence):
                    try:
                        messages = await subscription.fetch(self.fetch_messages, timeout=1)
                    except TimeoutError:  # nats-py raises its own subclass or the builtin
                        continue
                    await self.handle(conn, messages)
        finally:
            if subscription is not None:
                with suppress(Exception):
                    await subscription.unsubscribe()
            with suppress(Exception):
                await conn.close(timeout=2)

    async def handle(self, conn: asyncpg.Connection, messages: list[Msg]) -> None:
        started = time.perf_counter()
        batch: list[tuple[Msg, list[Row]]] = []
        alone: list[tuple[Msg, list[Row]]] = []
        for message in messages:
            delivered = message.metadata.num_delivered or 1
            if delivered > MAX_DELIVERIES:
                await self._set_aside(
                    message, f"delivered {delivered} times without being stored", "redelivered"
                )
                continue
            try:
                found = rows(message.data)
            except Malformed as exc:
                await self._set_aside(message, str(exc), "malformed")
                continue
            except Exception as exc:  # a conversion the contract's checks did not foresee
                await self._set_aside(message, f"cannot be converted: {exc!r}", "unconvertible")
                continue
            # A message delivered before without an outcome (its ingester died on it) is
            # stored on its own, so it cannot hold the rest of the batch again.
            (alone if delivered > 1 else batch).append((message, found))
        try:
            await self._store(conn, [row for _, found in batch for row in found])
        except Exception as exc:
            if is_passing(exc):
                raise  # the database is away: everything is delivered again
            alone = batch + alone
            batch = []
        for message, found in alone:
            # Message by message, setting aside only the ones the database refuses.
            try:
                await self._store(conn, found)
            except Exception as exc:
                if is_passing(exc):
                    raise
                await self._set_aside(message, f"refused by the database: {exc}", "refused")
                continue
            batch.append((message, found))
        for message, _ in batch:
            await message.ack()
        self.batch_seconds.observe(time.perf_counter() - started)

    async def _store(self, conn: asyncpg.Connection, found: list[Row]) -> None:
        if not found:
            return
        async with conn.transaction():
            await conn.copy_records_to_table("results_staging", records=found, columns=COLUMNS)
            status = await conn.execute(_MOVE)
        inserted = int(status.rsplit(" ", 1)[-1])
        self.ingested.inc(inserted)
        self.duplicates.inc(len(found) - inserted)
        _log.debug("results.stored", rows=len(found), inserted=inserted)

    async def _set_aside(self, message: Msg, reason: str, kind: str) -> None:
        _log.error("results.dead_lettered", subject=message.subject, kind=kind, reason=reason[:300])
        await dead_letter(self.js, "RESULTS", self.namespace, message, reason)
        await message.ack()
        self.dead_lettered.labels(kind).inc()
