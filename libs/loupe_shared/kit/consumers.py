"""Durable JetStream pull consumers with one shape everywhere: fetch a batch, handle each
message on its own, acknowledge only after the handler succeeded.

Poison never holds the stream: a message that cannot be parsed, or whose values the
database refuses (a data exception), goes to the dead-letter subject (`deadletter.<stream>`,
kept by the DEADLETTER stream) with the reason at once; a message whose handler keeps
failing for another reason of its own (a constraint, a bug) is redelivered with a growing
delay and set aside after `max_deliveries`. A passing failure — the database or the network
away — never sets anything aside: the message waits (up to a hard cap of
`HARD_MAX_DELIVERIES`, should it be the message that takes the dependency down), and after
two in a row the rest of the batch is given back without being tried. A handler that does
not return within `HANDLER_TIMEOUT_S` counts as a passing failure. Every message set aside
is logged (`consumer.dead_lettered`) and counted (`consumer_dead_lettered_total{consumer,
reason}`); every consumer of every service, the result ingest and the inspection workers
included, sets aside through `DeadLetters`.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Protocol
from weakref import WeakKeyDictionary

import asyncpg
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, DisconnectionError

from loupe_shared.contracts import subjects
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.tasks import supervise

_log = get_logger("loupe.consumers")
Handler = Callable[[str, bytes], Awaitable[None]]
MALFORMED = (ValidationError, json.JSONDecodeError, KeyError, ValueError, UnicodeDecodeError)
MAX_DELIVERIES = 5
HARD_MAX_DELIVERIES = 200
# Below the consumers' ack wait (30 s), so a hung handler is retried rather than the
# message delivered twice at once.
HANDLER_TIMEOUT_S = 25.0
# SQLSTATE classes of failures that pass: connection, transaction rollback (serialisation,
# deadlock), insufficient resources, object in use, operator intervention, system error; and
# a server gone read-only (a standby during a failover).
_PASSING_SQLSTATES = ("08", "40", "53", "55", "57", "58", "25006")


class WriteFence(Protocol):
    """The service's maintenance guard (`kit_state(app).maintenance`): while a restore's notice
    is up, a background writer starts nothing new, and the restore waits for what it has
    admitted before it takes its restore point."""

    def notice(self) -> object | None: ...

    def blind(self) -> bool: ...

    def admit(self) -> None: ...

    def release(self) -> None: ...


FENCE_POLL_S = 0.2


@asynccontextmanager
async def fenced(fence: WriteFence | None) -> AsyncIterator[None]:
    """Admitted as one write of the service: waits while a restore's notice is up. The check
    and the admission happen with no await between them, so the guard either sees this
    write under way or this writer sees the notice."""
    if fence is None:
        yield
        return
    while fence.notice() is not None or fence.blind():  # noqa: ASYNC110 - a notice read from NATS
        await asyncio.sleep(FENCE_POLL_S)
    fence.admit()
    try:
        yield
    finally:
        fence.release()


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps: SQLAlchemy's `orig`, then the cause or context."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
        )
    return seen


def is_passing(exc: BaseException) -> bool:
    """Whether `exc` says a dependency is away (retry later) rather than that the message
    itself cannot be handled."""
    for current in _chain(exc):
        if isinstance(current, asyncpg.DataError):
            return False
        if isinstance(
            current,
            OSError
            | ConnectionError
            | TimeoutError
            | asyncpg.PostgresConnectionError
            | asyncpg.InterfaceError
            | DisconnectionError,
        ):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate.startswith(_PASSING_SQLSTATES)
    return False


def is_refused(
    exc: BaseException,
    sqlstates: tuple[str, ...] = ("22",),
    classes: tuple[type[BaseException], ...] = (OverflowError, UnicodeEncodeError),
) -> bool:
    """Whether `exc` says the message's values can never be stored: a data exception of
    PostgreSQL (SQLSTATE class 22: out of range, bad encoding, NUL in text, or the
    `sqlstates` given), a value the driver cannot encode (`asyncpg.DataError`, `classes`).
    Such a message is set aside at once."""
    for current in _chain(exc):
        if is_passing(current) and not isinstance(current, asyncpg.DataError):
            return False
        if isinstance(current, (asyncpg.DataError, *classes)):
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate.startswith(sqlstates)
    return False


def retry_delay(delivered: int, first_s: float = 2.0) -> float:
    """Seconds before the next delivery of a message that failed `delivered` times: doubling
    from `first_s`, at most a minute."""
    return float(min(first_s * 2 ** (max(delivered, 1) - 1), 60.0))


def _delivered(message: Msg) -> int:
    try:
        return message.metadata.num_delivered or 1
    except NotJSMessageError:  # published to a core subscription: delivered once
        return 1


def _header_text(text: str, limit: int = 500) -> str:
    """`text` as a header value NATS carries intact: printable ASCII, one line."""
    escaped = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if " " <= c <= "~" else " " for c in escaped)[:limit]


class DeadLetters:
    """Sets messages aside: the dead letter with its reason, the acknowledgement, the event
    log line and the count by consumer and reason class. One per metrics registry: use
    `DeadLetters.of(registry)` wherever a service needs it."""

    _by_registry: "WeakKeyDictionary[CollectorRegistry, DeadLetters]" = WeakKeyDictionary()

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else REGISTRY
        self.total = Counter(
            "consumer_dead_lettered_total",
            "Messages set aside on the dead-letter subject, by consumer and reason",
            ["consumer", "reason"],
            registry=registry,
        )
        DeadLetters._by_registry[registry] = self

    @classmethod
    def of(cls, registry: CollectorRegistry | None = None) -> "DeadLetters":
        found = cls._by_registry.get(registry if registry is not None else REGISTRY)
        return found if found is not None else cls(registry)

    async def set_aside(
        self,
        js: JetStreamContext,
        message: Msg,
        *,
        stream: str,
        namespace: str,
        consumer: str,
        reason: str,
        kind: str,
    ) -> None:
        """Publish `message` to `deadletter.<stream>` with `reason`, then acknowledge it.
        `kind` is the reason's class, the metric's label: malformed, unconvertible,
        refused, failed, redelivered."""
        _log.error(
            "consumer.dead_lettered",
            consumer=consumer,
            subject=message.subject,
            kind=kind,
            delivered=_delivered(message),
            reason=reason[:500],
        )
        await dead_letter(js, stream, namespace, message, reason)
        await message.ack()
        self.total.labels(consumer, kind).inc()


async def consume(
    js: JetStreamContext,
    *,
    stream: str,
    filter_subject: str,
    durable: str,
    handler: Handler,
    namespace: str = "",
    batch: int = 100,
    dead_letters: DeadLetters | None = None,
    max_deliveries: int = MAX_DELIVERIES,
    fence: WriteFence | None = None,
    handler_timeout_s: float = HANDLER_TIMEOUT_S,
    retry_first_s: float = 2.0,
) -> None:
    """Run until cancelled; a lost stream or connection is retried, never fatal. `handler`
    gets the subject without the namespace. A failed message comes back after
    `retry_first_s`, then twice as long each time (at most a minute)."""
    consumer = _Consumer(
        js,
        stream,
        filter_subject,
        durable,
        handler,
        namespace,
        batch,
        dead_letters if dead_letters is not None else DeadLetters.of(),
    )
    consumer.max_deliveries = max(1, max_deliveries)
    consumer.fence = fence
    consumer.handler_timeout_s = handler_timeout_s
    consumer.retry_first_s = retry_first_s
    await supervise(consumer.run, event="consumer.restarting", durable=durable)


class _Consumer:
    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        filter_subject: str,
        durable: str,
        handler: Handler,
        namespace: str,
        batch: int,
        dead_letters: DeadLetters,
    ) -> None:
        self.js = js
        self.stream = stream
        self.filter_subject = filter_subject
        self.durable = durable
        self.handler = handler
        self.namespace = namespace
        self.batch = batch
        self.dead_letters = dead_letters
        self.max_deliveries = MAX_DELIVERIES
        self.handler_timeout_s = HANDLER_TIMEOUT_S
        self.retry_first_s = 2.0
        self.fence: WriteFence | None = None
        self.prefix = f"{namespace}." if namespace else ""

    async def run(self) -> None:
        subscription = await self.js.pull_subscribe(
            subjects.subject(self.filter_subject, self.namespace),
            durable=self.durable,
            stream=subjects.stream_name(self.stream, self.namespace),
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                # Counted here, so the last delivery is set aside rather than dropped.
                max_deliver=-1,
                ack_wait=30,
            ),
        )
        try:
            while True:
                # Fetched outside the fence: an idle fetch waits up to its timeout, which
                # would hold a restore's fence that long; a fetch changes nothing. Handled
                # inside it (messages fetched while a notice is up wait unacknowledged).
                try:
                    messages = await subscription.fetch(self.batch, timeout=2)
                except TimeoutError:  # nats-py raises its own subclass or the builtin
                    continue
                async with fenced(self.fence):
                    await self.handle_batch(messages)
        finally:
            # Unsubscribed here, so draining the connection on shutdown has nothing to wait for.
            with suppress(Exception):
                await subscription.unsubscribe()

    async def handle_batch(self, messages: list[Msg]) -> None:
        """Each message on its own. Two passing failures in a row say the dependency is away
        rather than that one message upsets it: the rest of the batch is given back for
        later instead of each waiting for its own failure."""
        away = 0
        for index, message in enumerate(messages):
            try:
                failed = await self.handle(message)
            except Exception as exc:  # setting it aside failed (NATS away): later, not lost
                _log.warning("consumer.handle_failed", durable=self.durable, error=repr(exc)[:500])
                with suppress(Exception):
                    await message.nak(delay=retry_delay(_delivered(message), self.retry_first_s))
                failed = True
            away = away + 1 if failed else 0
            if away >= 2:
                for rest in messages[index + 1 :]:
                    with suppress(Exception):
                        await rest.nak(delay=retry_delay(_delivered(rest), self.retry_first_s))
                return

    async def handle(self, message: Msg) -> bool:
        """Handle one message; answers whether it failed for a passing reason."""
        delivered = _delivered(message)
        if delivered > HARD_MAX_DELIVERIES:
            await self.set_aside(message, f"delivered {delivered} times", "redelivered")
            return False
        try:
            async with asyncio.timeout(self.handler_timeout_s):
                await self.handler(message.subject.removeprefix(self.prefix), message.data)
        except asyncio.CancelledError:
            raise
        except MALFORMED as exc:
            await self.set_aside(message, f"malformed: {exc}"[:1000], "malformed")
            return False
        except Exception as exc:
            if is_refused(exc):
                await self.set_aside(message, f"refused: {exc!r}"[:1000], "refused")
                return False
            passing = is_passing(exc)
            if not passing and delivered >= self.max_deliveries:
                await self.set_aside(message, f"failed {delivered} times: {exc!r}"[:1000], "failed")
                return False
            _log.warning(
                "consumer.handler_failed",
                durable=self.durable,
                delivered=delivered,
                passing=passing,
                error=repr(exc)[:500],
            )
            with suppress(Exception):
                await message.nak(delay=retry_delay(delivered, self.retry_first_s))
            return passing
        await message.ack()
        return False

    async def set_aside(self, message: Msg, reason: str, kind: str) -> None:
        await self.dead_letters.set_aside(
            self.js,
            message,
            stream=self.stream,
            namespace=self.namespace,
            consumer=self.durable,
            reason=reason,
            kind=kind,
        )


async def dead_letter(
    js: JetStreamContext, stream: str, namespace: str, message: Msg, reason: str
) -> None:
    """Set a message that can never be handled aside, with the reason, on
    `deadletter.<stream>`; the caller then acknowledges it so it never blocks the stream.
    The original subject and the delivery count travel as headers."""
    await js.publish(
        subjects.subject(f"{subjects.DEADLETTER}.{stream.lower()}", namespace),
        message.data,
        headers={
            "Loupe-Reason": _header_text(reason),
            "Loupe-Subject": _header_text(message.subject, 300),
            "Loupe-Delivered": str(_delivered(message)),
        },
    )
