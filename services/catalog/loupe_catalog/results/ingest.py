"""Durable ingest of `results.recorded` into PostgreSQL.

A pull consumer (`catalog-results-ingest`, shared by any number of ingesters) fetches a
batch of messages (the next batch is fetched and decoded while this one is stored); their
results are COPYed into `results` in one transaction, and the messages are acknowledged only
after the commit. Rows that may be stored already (a message delivered before, or a COPY
refused on the primary key because a publisher sent some results again) go through a
session-local staging table and `INSERT ... ON CONFLICT DO NOTHING` instead. A crash before
the commit leaves the messages unacknowledged (redelivered after `ACK_WAIT_S`); a crash after
the commit and before the acknowledgements redelivers rows that are already there, which the
insert skips.

Poison never holds the stream. A message that breaks the contract, or cannot be converted
(whatever the exception), is set aside on `deadletter.results` with the reason before the
batch is stored. When the database refuses a batch for a reason of the data (anything but
an outage), the batch is halved until the refused messages stand alone; only they are set
aside, the rest commit. When the database is away, nothing is set aside: the messages of
the batch still unsettled are delivered again after a delay, and a message delivered more
than `max_deliveries` times without being stored is set aside before it is tried again (so
one that takes the connection down with it, or kills its ingester, ends there). A refusal
that says nothing about the values (an internal error, a permission) is retried the same
way. A message delivered before is stored on its own, so it cannot hold a batch again.
"""

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass

import asyncpg
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Histogram

from loupe_catalog.results import partitions
from loupe_catalog.results.rows import COLUMNS, Malformed, Row, rows
from loupe_shared.contracts import subjects
from loupe_shared.kit import db
from loupe_shared.kit.consumers import (
    DeadLetters,
    WriteFence,
    fenced,
    is_passing,
    is_refused,
    retry_delay,
)
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.settings import DatabaseSettings
from loupe_shared.kit.tasks import cancel_and_wait, supervise

_log = get_logger("catalog.results.ingest")
DURABLE = "catalog-results-ingest"
ACK_WAIT_S = 10
# A message delivered this often without being stored (each ingester died on it) is set
# aside; a database outage does not count, as nothing is fetched while it lasts.
MAX_DELIVERIES = 20
PARTITIONS_EVERY_S = 6 * 3600
FETCH_MORE_S = 0.25
# What says a message's own values are refused: a data exception, an integrity constraint
# (a missing value, a check), and what the driver raises encoding a value it cannot send.
_REFUSED_SQLSTATES = ("22", "23")
_REFUSED_CLASSES = (OverflowError, UnicodeError, ValueError, TypeError)
_COLUMNS = ", ".join(COLUMNS)
_LINE, _VERDICT = COLUMNS.index("line_id"), COLUMNS.index("verdict")
# Answers what it inserted per line and verdict (duplicates are not inserted), for the
# per-line counter the dashboards' results/s and pass rate come from.
_MOVE = (
    f"WITH moved AS (INSERT INTO results ({_COLUMNS}) SELECT {_COLUMNS} "  # noqa: S608
    "FROM results_staging ON CONFLICT (result_id, captured_at) DO NOTHING "
    "RETURNING line_id, verdict) "
    "SELECT line_id, verdict, count(*) AS n FROM moved GROUP BY line_id, verdict"
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
        max_deliveries: int = MAX_DELIVERIES,
        retry_first_s: float = 1.0,
        convert: Callable[[bytes], list[Row]] = rows,
        announce: Callable[[set[str]], Awaitable[None]] | None = None,
    ) -> None:
        """`announce`: called after each commit with the lines stored (the catalog
        replicas' notice that results were stored, `results/stored.py`)."""
        self.database = database
        self.announce = announce
        self.max_deliveries = max(1, max_deliveries)
        self.retry_first_s = retry_first_s
        self.convert = convert
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
        # One series per line and verdict: lines are a bounded set (the installation's).
        self.per_line = Counter(
            "results_line_ingested_total",
            "Results written to the database, by line and verdict",
            ["line", "verdict"],
            registry=registry,
        )
        self.dead_letters = DeadLetters.of(registry)
        self.batch_seconds = Histogram(
            "results_ingest_batch_seconds", "Time to store one fetched batch", registry=registry
        )

    async def run(self) -> None:
        """Ingest until cancelled; a lost database or NATS connection is retried."""
        await supervise(self._run, event="results.ingest_restarting")

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
        ahead: asyncio.Task[list[tuple[Msg, _Converted]]] | None = None
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
                # Read outside the fence (a read changes nothing, and an idle fetch waits up
                # to its timeout: inside, it would hold a restore's fence that long); stored
                # inside it: a restore takes its restore point only once no batch is under
                # way, and none starts until it is over (a batch read meanwhile waits
                # unacknowledged, the stream keeps what arrives).
                fetched = await (ahead or self._read(subscription))
                ahead = None
                if not fetched:
                    continue
                async with fenced(self.fence):
                    # The next batch is fetched and decoded (nothing written, nothing set
                    # aside) while the database stores this one; the ingester's Python and
                    # PostgreSQL then work side by side instead of in turn.
                    ahead = asyncio.create_task(self._read(subscription))
                    await self.handle(conn, [m for m, _ in fetched], [c for _, c in fetched])
        finally:
            if ahead is not None:  # its messages, unacknowledged, are delivered again
                await cancel_and_wait([ahead])
            if subscription is not None:
                with suppress(Exception):
                    await subscription.unsubscribe()
            with suppress(Exception):
                await conn.close(timeout=2)

    async def _read(
        self, subscription: JetStreamContext.PullSubscription
    ) -> list[tuple[Msg, "_Converted"]]:
        """The next batch with each message converted (or the exception converting it
        raised); empty when nothing came within the fetch's wait."""
        messages = await self._fetch(subscription)
        converted: list[tuple[Msg, _Converted]] = []
        for i, message in enumerate(messages):
            if i and i % 8 == 0:
                await asyncio.sleep(0)  # lets the store of the batch before go on meanwhile
            converted.append((message, self._convert(message)))
        return converted

    async def _fetch(self, subscription: JetStreamContext.PullSubscription) -> list[Msg]:
        """The first message as soon as there is one, and what the stream holds behind it
        (up to `fetch_messages`). Not one `fetch(fetch_messages)`: when nothing is waiting,
        nats-py's fetch holds the first message that comes until the batch is full or the
        fetch's time is up, so a trickle of results would wait up to that time."""
        try:
            messages = await subscription.fetch(1, timeout=1)
        except TimeoutError:  # nats-py raises its own subclass or the builtin
            return []
        behind = messages[-1].metadata.num_pending or 0
        if behind and self.fetch_messages > 1:
            # Asked for what is there; should another ingester take it first, the wait
            # for more is short.
            with suppress(TimeoutError):
                messages += await subscription.fetch(
                    min(behind, self.fetch_messages - 1), timeout=FETCH_MORE_S
                )
        return messages

    def _convert(self, message: Msg) -> "_Converted":
        if _delivered(message) > self.max_deliveries:
            return None  # set aside unread
        try:
            return self.convert(message.data)
        except Exception as exc:
            return exc

    async def handle(
        self,
        conn: asyncpg.Connection,
        messages: list[Msg],
        converted: list["_Converted"] | None = None,
    ) -> None:
        """Store `messages` (their conversions, when `converted` holds them already), set
        aside what cannot be stored, acknowledge what is settled."""
        started = time.perf_counter()
        if converted is None:
            converted = [self._convert(message) for message in messages]
        fresh: list[_Pending] = []
        again: list[_Pending] = []
        for message, found in zip(messages, converted, strict=True):
            delivered = _delivered(message)
            if found is None:
                await self._set_aside(
                    message, f"delivered {delivered} times without being stored", "redelivered"
                )
                continue
            if isinstance(found, Malformed):
                await self._set_aside(message, str(found), "malformed")
                continue
            if isinstance(found, Exception):  # a conversion the contract's checks did not foresee
                await self._set_aside(message, f"cannot be converted: {found!r}", "unconvertible")
                continue
            (again if delivered > 1 else fresh).append(_Pending(message, found))
        try:
            await self._isolate(conn, fresh, maybe_stored=False)
            away: Exception | None = None
            for one in again:
                # One by one; a passing failure of one leaves it for later and goes on with
                # the rest, unless the connection went with it.
                try:
                    await self._isolate(conn, [one], maybe_stored=True)
                except Exception as exc:
                    if not is_passing(exc) or conn.is_closed():
                        raise
                    away = exc
            if away is not None:
                raise away
        finally:
            # Whatever is not settled (the database away, a failure that says nothing about
            # the message, a cancellation) comes back after a growing delay; nothing of it
            # is set aside here.
            for pending in fresh + again:
                if not pending.settled:
                    with suppress(Exception):
                        delivered = _delivered(pending.message)
                        await pending.message.nak(delay=retry_delay(delivered, self.retry_first_s))
        self.batch_seconds.observe(time.perf_counter() - started)

    async def _isolate(
        self, conn: asyncpg.Connection, group: list["_Pending"], *, maybe_stored: bool
    ) -> None:
        """Store `group` in one transaction; if the database refuses it, halve it until the
        refused messages stand alone. A passing failure raises."""
        if not group:
            return
        try:
            await self._store(
                conn, [row for pending in group for row in pending.rows], maybe_stored
            )
        except Exception as exc:
            if is_passing(exc):
                raise
            if len(group) == 1:
                await self._refused(group[0], exc)
                return
            middle = len(group) // 2
            await self._isolate(conn, group[:middle], maybe_stored=maybe_stored)
            await self._isolate(conn, group[middle:], maybe_stored=maybe_stored)
            return
        for pending in group:
            await pending.message.ack()
            pending.settled = True

    async def _refused(self, pending: "_Pending", exc: Exception) -> None:
        """One message the database would not take. Refused for its values (a data
        exception, a constraint, a value the driver cannot encode): set aside at once.
        Any other failure (an internal error, a permission, a bug) may not be the message's
        own: it is delivered again, and set aside only after `max_deliveries`."""
        message = pending.message
        delivered = _delivered(message)
        if is_refused(exc, _REFUSED_SQLSTATES, _REFUSED_CLASSES):
            await self._set_aside(message, f"refused by the database: {exc!r}", "refused")
        elif delivered >= self.max_deliveries:
            await self._set_aside(message, f"failed {delivered} times: {exc!r}", "failed")
        else:
            _log.warning("results.store_failed", delivered=delivered, error=repr(exc)[:500])
            return
        pending.settled = True

    async def _store(self, conn: asyncpg.Connection, found: list[Row], maybe_stored: bool) -> None:
        """Store `found` once. Rows never delivered before are COPYed straight into
        `results`: one pass, as a bare COPY. Should some be there already (a publisher sent
        them again), that COPY fails whole on the primary key and the rows take the careful
        way: COPYed into the staging table and moved with `ON CONFLICT DO NOTHING`."""
        if not found:
            return
        if not maybe_stored:
            try:
                # One statement, so its own transaction: committed (and synced) when it
                # returns, without a BEGIN and a COMMIT to wait for.
                await conn.copy_records_to_table("results", records=found, columns=COLUMNS)
            except asyncpg.UniqueViolationError:
                pass
            else:
                per_line = collections.Counter((row[_LINE], row[_VERDICT]) for row in found)
                self._count(per_line.items())
                lines = {line for line, _ in per_line}
                self.ingested.inc(len(found))
                _log.debug("results.stored", rows=len(found), inserted=len(found))
                await self._announce(lines)
                return
        async with conn.transaction():
            await conn.copy_records_to_table("results_staging", records=found, columns=COLUMNS)
            moved = await conn.fetch(_MOVE)
        inserted = self._count(((row["line_id"], row["verdict"]), row["n"]) for row in moved)
        self.ingested.inc(inserted)
        self.duplicates.inc(len(found) - inserted)
        _log.debug("results.stored", rows=len(found), inserted=inserted)
        if inserted:
            await self._announce({row["line_id"] for row in moved if row["n"]})

    async def _announce(self, lines: set[str]) -> None:
        if self.announce is not None:
            await self.announce(lines)

    def _count(self, counts: Iterable[tuple[tuple[str, str], int]]) -> int:
        """Add stored results to the per-line counter; answer how many."""
        total = 0
        for (line, verdict), n in counts:
            self.per_line.labels(line, verdict).inc(n)
            total += n
        return total

    async def _set_aside(self, message: Msg, reason: str, kind: str) -> None:
        await self.dead_letters.set_aside(
            self.js,
            message,
            stream="RESULTS",
            namespace=self.namespace,
            consumer=DURABLE,
            reason=reason,
            kind=kind,
        )


# A message's rows, the exception converting it raised, or None: delivered too often to try.
_Converted = list[Row] | Exception | None


@dataclass
class _Pending:
    message: Msg
    rows: list[Row]
    settled: bool = False


def _delivered(message: Msg) -> int:
    return message.metadata.num_delivered or 1
