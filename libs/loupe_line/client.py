"""The line client: batches inspection results into JetStream messages, keeps up to
`max_in_flight` of them awaiting acks, and spools to SQLite whatever the server cannot take.

Every message moves through one ordered pipeline. A message goes to the network only while
the spool is empty, the link is up and the breaker is closed; otherwise, or when its ack does
not come, it is appended to the spool, strictly in pipeline order. A replayer drains the spool
oldest first, with the message's original batch id, so JetStream's duplicate window drops
anything that had in fact arrived. Hence results reach the stream in the order they were
accepted, at least once, and a duplicate needs a lost ack.
"""

import asyncio
import contextlib
import enum
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from nats.aio.client import Client
from nats.js.client import JetStreamContext

from loupe_line.breaker import BreakerState, CircuitBreaker, full_jitter
from loupe_line.settings import LineSettings
from loupe_line.spool import Outgoing, Spool, Spooled
from loupe_shared.contracts.results import (
    RESULT_SCHEMA_VERSION,
    InspectionRequest,
    InspectionResult,
)
from loupe_shared.contracts.subjects import INSPECTION_REQUESTED, RESULTS_RECORDED, subject
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.nats import server_urls
from loupe_shared.kit.tasks import stopped

_log = get_logger("loupe.line")
_HEAD = b'{"schema_version":%d,"results":[' % RESULT_SCHEMA_VERSION
_TAIL = b"]}"
# Spool rows appended in one synced transaction, at most.
_SPOOL_GROUP = 512


class SpoolError(RuntimeError):
    """A message was neither acknowledged nor spooled: the spool's disk refused it."""


class NotConnectedError(ConnectionError):
    """The link to NATS is down."""


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True)
class LineStats:
    """Counters since start(); `published`, `spooled`, `replayed` and `lost` count results
    and inspection requests, `failures` counts failed delivery attempts of messages."""

    published: int
    spooled: int
    replayed: int
    failures: int
    lost: int
    breaker: str
    spool_depth: int
    in_flight: int
    connected: bool


@dataclass(eq=False)
class _Message:
    subject: str
    batch_id: str
    payload: bytes
    items: int
    done: asyncio.Future[None]
    # One future per result of the batch, settled with `done` (see `_OpenBatch`).
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    # Sent to the network; otherwise bound for the spool.
    direct: bool = False
    ack: asyncio.Future[Any] | None = None
    deadline: float = 0.0
    # Already counted as bound for the spool (the link dropped while it awaited its ack).
    doomed: bool = False


@dataclass(eq=False)
class _OpenBatch:
    done: asyncio.Future[None]
    parts: list[bytes] = field(default_factory=list)
    # What submit() answered each result: a plain future of its own, settled when the batch
    # is (cheaper than shielding the batch's future per result, which cost as much as encoding
    # the result); a caller giving up on one cancels only its own.
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    size: int = len(_HEAD) + len(_TAIL)


def _bind(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    """Settle `target` with the outcome of `source`; giving up on `target` cancels `source`."""

    def forward(done: asyncio.Future[Any]) -> None:
        if target.done():
            if not done.cancelled():
                done.exception()  # retrieved, so never reported as unhandled
        elif done.cancelled():
            target.cancel()
        elif (error := done.exception()) is not None:
            target.set_exception(error)
        else:
            target.set_result(done.result())

    def abandon(done: asyncio.Future[Any]) -> None:
        if not source.done():
            source.cancel()

    source.add_done_callback(forward)
    target.add_done_callback(abandon)


def _discard(future: asyncio.Future[Any]) -> None:
    if future.done():
        if not future.cancelled():
            future.exception()
    else:
        future.cancel()


class LineClient:
    """Publishes inspection results of one line process. `publish()` returns once the result
    is durable: acknowledged by JetStream or written to the local spool."""

    def __init__(self, settings: LineSettings) -> None:
        self.settings = settings
        self._results_subject = subject(RESULTS_RECORDED, settings.namespace)
        self._requests_subject = subject(INSPECTION_REQUESTED, settings.namespace)
        self._linger_s = settings.linger_ms / 1000
        self._max_bytes = settings.batch_max_bytes
        self._limit = settings.max_pending_results
        self._breaker = CircuitBreaker(
            settings.breaker_failures, settings.breaker_cooldown_s, settings.breaker_cooldown_max_s
        )
        self._state = _State.NEW
        self._nc = Client()
        self._js: JetStreamContext | None = None
        self._spool: Spool | None = None
        self._connector: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

        self._open: _OpenBatch | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._outbox: asyncio.Queue[_Message] = asyncio.Queue()
        self._pipeline: deque[_Message] = deque()
        self._pipeline_ready = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        # Results and requests accepted and not yet durable.
        self._unresolved = 0
        self._room = asyncio.Event()
        self._idle = asyncio.Event()
        # Messages in the spool or bound for it; while any, nothing goes to the network
        # except through the replayer, which keeps the order.
        self._spool_bound = 0
        self._spool_empty = asyncio.Event()
        self._replay_wake = asyncio.Event()
        self._replay_acks: list[asyncio.Future[Any]] = []
        # Cuts a replay pause short: the link came back, or the client is closing.
        self._nudge = asyncio.Event()
        self._stopping = asyncio.Event()
        self._quiet = False
        self._link_error_logged = False

        self._published = 0
        self._spooled = 0
        self._replayed = 0
        self._failures = 0
        self._lost = 0

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool (replaying what an earlier process left) and connect. Waits up to
        `connect_timeout_s` for NATS; past that, results are spooled until it answers."""
        if self._state is not _State.NEW:
            raise RuntimeError("a LineClient starts once")
        self._loop = asyncio.get_running_loop()
        self._spool = await asyncio.to_thread(Spool, self.settings.spool_path)
        self._room.set()
        self._idle.set()
        self._add_spool_bound(await asyncio.to_thread(self._spool.depth))
        if self._spool_bound:
            _log.info("line.spool_found", messages=self._spool_bound)
        self._state = _State.RUNNING
        self._replayer = asyncio.create_task(self._replay_loop(), name="loupe-line-replay")
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="loupe-line-send"),
            asyncio.create_task(self._settle_loop(), name="loupe-line-settle"),
            self._replayer,
        ]
        for task in self._tasks:
            task.add_done_callback(self._crashed)
        self._connector = asyncio.create_task(self._connect(), name="loupe-line-connect")
        done, _ = await asyncio.wait({self._connector}, timeout=self.settings.connect_timeout_s)
        if self._connector in done and (error := self._connector.exception()) is not None:
            await self.close()
            raise error
        if not done:
            _log.warning("line.nats_unreachable", url=self.settings.nats_url, spooling=True)

    async def flush(self) -> None:
        """Wait until every result accepted so far is acknowledged or spooled."""
        self._cut()
        await self._idle.wait()

    async def close(self) -> None:
        """Flush, stop replaying and disconnect; nothing accepted is lost. What is still
        spooled is replayed by the next client on the same spool."""
        if self._state is _State.NEW:
            self._state = _State.CLOSED
            return
        if self._state is not _State.RUNNING:
            return
        self._state = _State.CLOSING
        try:
            await self.flush()
        finally:
            self._stopping.set()
            self._replay_wake.set()
            self._nudge.set()
            # The replayer finishes the chunk it is on, so nothing it sent is replayed twice.
            await asyncio.wait({self._replayer}, timeout=self.settings.publish_timeout_s + 1)
            pending = [*self._tasks, *([self._connector] if self._connector else [])]
            for task in pending:
                task.remove_done_callback(self._crashed)
            await stopped(pending)
            for task in pending:
                if not task.cancelled():
                    task.exception()  # what a task raised while stopping is of no use now
            with contextlib.suppress(Exception):
                await self._nc.close()
            if self._spool is not None:
                await asyncio.to_thread(self._spool.close)
            self._state = _State.CLOSED

    def stats(self) -> LineStats:
        return LineStats(
            published=self._published,
            spooled=self._spooled,
            replayed=self._replayed,
            failures=self._failures,
            lost=self._lost,
            breaker=self._breaker.state.value,
            spool_depth=self._spool_bound,
            in_flight=len(self._pipeline),
            connected=self._nc.is_connected,
        )

    async def wait_replayed(self, timeout_s: float | None = None) -> bool:
        """Wait until the spool is empty; answers whether it is (False on timeout)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._spool_empty.wait()
        return self._spool_bound == 0

    # --- accepting --------------------------------------------------------------------------

    async def publish(self, result: InspectionResult | Mapping[str, Any]) -> None:
        """Publish one result; returns once it is durable. An invalid result raises
        (pydantic's ValidationError is a ValueError) before anything is sent."""
        durable = await self.submit(result)
        await durable

    async def submit(self, result: InspectionResult | Mapping[str, Any]) -> asyncio.Future[None]:
        """Accept one result into the current batch without waiting for it to be durable;
        answers a future that completes when it is. For callers that pipeline many results
        (await the futures, or call flush()). Waits only when too many are pending."""
        body = self._encode_result(result)
        if self._state is not _State.RUNNING or self._unresolved >= self._limit:
            await self._reserve()  # (the common case, room and running, needs no await)
        done = self._add(body)
        if self._open is None:
            # A batch was just cut: let it leave even if the caller never waits.
            await asyncio.sleep(0)
        return done

    async def request_inspection(self, request: InspectionRequest | Mapping[str, Any]) -> None:
        """Ask for a stored capture to be inspected; `Nats-Msg-Id` is the request id.
        Returns once the request is durable, like publish()."""
        if isinstance(request, InspectionRequest):
            model = request
        elif isinstance(request, Mapping):
            model = InspectionRequest.model_validate(request)
        else:
            raise TypeError(f"expected an InspectionRequest or a mapping, not {type(request)}")
        body = model.model_dump_json().encode()
        await self._reserve()
        self._cut()  # results accepted before the request leave before it
        done: asyncio.Future[None] = self._loop.create_future()
        self._unresolved += 1
        self._idle.clear()
        self._outbox.put_nowait(
            _Message(self._requests_subject, str(model.request_id), body, 1, done)
        )
        await asyncio.shield(done)

    def _encode_result(self, result: InspectionResult | Mapping[str, Any]) -> bytes:
        if isinstance(result, InspectionResult):
            model = result
        elif isinstance(result, Mapping):
            model = InspectionResult.model_validate(result)
        else:
            raise TypeError(f"expected an InspectionResult or a mapping, not {type(result)}")
        # The model's own serializer (a subclass keeps its own fields), called for bytes:
        # `model_dump_json()` is the same call decoded to a str, which would be encoded back.
        body = model.__pydantic_serializer__.to_json(model)
        if len(body) + len(_HEAD) + len(_TAIL) > self._max_bytes:
            raise ValueError(
                f"result {model.result_id} is {len(body)} bytes encoded; a message holds at"
                f" most {self._max_bytes} (batch_max_bytes)"
            )
        return body

    async def _reserve(self) -> None:
        if self._state is not _State.RUNNING:
            raise RuntimeError(f"the line client is {self._state.value}, not running")
        while self._unresolved >= self._limit:
            self._room.clear()
            await self._room.wait()
            if self._state is not _State.RUNNING:
                raise RuntimeError(f"the line client is {self._state.value}, not running")

    def _add(self, body: bytes) -> asyncio.Future[None]:
        batch = self._open
        if batch is not None and batch.size + len(body) + 1 > self._max_bytes:
            self._cut()
            batch = None
        if batch is None:
            batch = self._open = _OpenBatch(done=self._loop.create_future())
            self._linger = self._loop.call_later(self._linger_s, self._cut)
        batch.parts.append(body)
        batch.size += len(body) + 1
        waiter: asyncio.Future[None] = self._loop.create_future()
        batch.waiters.append(waiter)
        self._unresolved += 1
        self._idle.clear()
        if len(batch.parts) >= self.settings.batch_max:
            self._cut()
        return waiter

    def _cut(self) -> None:
        """Close the open batch: it becomes one message with a batch id of its own."""
        batch, self._open = self._open, None
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if batch is None:
            return
        payload = b"".join((_HEAD, b",".join(batch.parts), _TAIL))
        self._outbox.put_nowait(
            _Message(
                self._results_subject,
                uuid.uuid4().hex,
                payload,
                len(batch.parts),
                batch.done,
                batch.waiters,
            )
        )

    # --- sending and settling, in pipeline order ---------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            message = await self._outbox.get()
            await self._slots.acquire()
            js = self._js
            if (
                js is not None
                and self._spool_bound == 0
                and self._nc.is_connected
                and self._breaker.state is BreakerState.CLOSED
            ):
                message.direct = True
                message.ack = self._loop.create_future()
                message.deadline = self._loop.time() + self.settings.publish_timeout_s
                self._pipeline.append(message)
                self._pipeline_ready.set()
                await self._send(js, message, message.ack)
            else:
                self._add_spool_bound(1)
                self._pipeline.append(message)
                self._pipeline_ready.set()

    async def _send(
        self, js: JetStreamContext, message: _Message, ack: asyncio.Future[Any]
    ) -> None:
        try:
            sent = await js.publish_async(
                message.subject, message.payload, headers={"Nats-Msg-Id": message.batch_id}
            )
        except Exception as error:  # not connected, buffer full: the message gets spooled
            if not ack.done():
                ack.set_exception(error)
            return
        _bind(sent, ack)

    async def _settle_loop(self) -> None:
        while True:
            if not self._pipeline:
                self._pipeline_ready.clear()
                await self._pipeline_ready.wait()
                continue
            head = self._pipeline[0]
            if head.direct:
                error = await self._outcome(head)
                if error is None:
                    self._pipeline.popleft()
                    self._published += head.items
                    self._delivered()
                    self._resolve(head)
                    continue
                self._failed("line.publish_failed", error, batch_id=head.batch_id)
                head.direct = False
                if not head.doomed:
                    head.doomed = True
                    self._add_spool_bound(1)
            group: list[_Message] = []
            while self._pipeline and not self._pipeline[0].direct and len(group) < _SPOOL_GROUP:
                group.append(self._pipeline.popleft())
            await self._store(group)

    async def _outcome(self, message: _Message) -> BaseException | None:
        """None once `message` is acknowledged; otherwise why it is not."""
        ack = message.ack
        assert ack is not None
        if not ack.done():
            remaining = message.deadline - self._loop.time()
            if remaining > 0:
                await asyncio.wait({ack}, timeout=remaining)
            if not ack.done():
                ack.cancel()
                return TimeoutError(f"no ack within {self.settings.publish_timeout_s} s")
        if ack.cancelled():
            return NotConnectedError("the link dropped before the ack")
        return ack.exception()

    async def _store(self, group: Sequence[_Message]) -> None:
        assert self._spool is not None
        rows = [Outgoing(m.batch_id, m.subject, m.payload, m.items) for m in group]
        try:
            await asyncio.to_thread(self._spool.append, rows)
        except Exception as error:
            self._add_spool_bound(-len(group))
            self._lost += sum(m.items for m in group)
            _log.error("line.spool_failed", error=repr(error), messages=len(group))
            for message in group:
                self._resolve(message, SpoolError(f"could not spool: {error!r}"))
            return
        self._spooled += sum(m.items for m in group)
        self._replay_wake.set()
        for message in group:
            self._resolve(message)

    def _resolve(self, message: _Message, error: BaseException | None = None) -> None:
        self._slots.release()
        for done in (message.done, *message.waiters):
            if not done.done():
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)
        self._unresolved -= message.items
        if self._unresolved < self._limit:
            self._room.set()
        if self._unresolved == 0:
            self._idle.set()

    # --- replaying the spool ----------------------------------------------------------------

    async def _replay_loop(self) -> None:
        assert self._spool is not None
        attempt = 0
        while not self._stopping.is_set():
            if self._spool_bound == 0:
                await self._replay_wake.wait()
                self._replay_wake.clear()
                continue
            if (delay := self._breaker.retry_in()) > 0:
                await self._pause(delay)
                continue
            if self._js is None or not self._nc.is_connected:
                error: BaseException | None = NotConnectedError("not connected to NATS")
            else:
                # A half-open breaker lets one message through as the probe.
                closed = self._breaker.state is BreakerState.CLOSED
                limit = self.settings.max_in_flight if closed else 1
                rows = await asyncio.to_thread(self._spool.head, limit)
                if not rows:  # counted, not written yet
                    await self._replay_wake.wait()
                    self._replay_wake.clear()
                    continue
                error = await self._replay(self._js, rows)
            if error is None:
                attempt = 0
                self._delivered()
                continue
            self._failed("line.replay_failed", error)
            attempt += 1
            await self._pause(
                full_jitter(attempt, self.settings.retry_base_s, self.settings.retry_max_s)
            )

    async def _replay(self, js: JetStreamContext, rows: Sequence[Spooled]) -> BaseException | None:
        """Send `rows` (oldest first), then delete the acknowledged prefix."""
        assert self._spool is not None
        acks: list[asyncio.Future[Any]] = []
        self._replay_acks = acks
        deadline = self._loop.time() + self.settings.publish_timeout_s
        error: BaseException | None = None
        for row in rows:
            if not self._nc.is_connected:
                break
            ack: asyncio.Future[Any] = self._loop.create_future()
            acks.append(ack)
            try:
                sent = await js.publish_async(
                    row.subject, row.payload, headers={"Nats-Msg-Id": row.batch_id}
                )
            except Exception as exc:
                ack.set_exception(exc)
                break
            _bind(sent, ack)
        acked: list[Spooled] = []
        for row, ack in zip(rows, acks, strict=False):
            if error is None:
                if not ack.done():
                    await asyncio.wait({ack}, timeout=max(0.0, deadline - self._loop.time()))
                if not ack.done():
                    error = TimeoutError(f"no ack within {self.settings.publish_timeout_s} s")
                elif ack.cancelled():
                    error = NotConnectedError("the link dropped before the ack")
                else:
                    error = ack.exception()
                if error is None:
                    acked.append(row)
            _discard(ack)
        self._replay_acks = []
        if error is None and len(acks) < len(rows):
            error = NotConnectedError("the link dropped while replaying")
        if acked:
            await asyncio.to_thread(self._spool.delete, [row.seq for row in acked])
            self._replayed += sum(row.items for row in acked)
            self._add_spool_bound(-len(acked))
        return error

    async def _pause(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._nudge.wait()
        except TimeoutError:
            return
        if not self._stopping.is_set():
            self._nudge.clear()

    # --- bookkeeping ------------------------------------------------------------------------

    def _add_spool_bound(self, count: int) -> None:
        self._spool_bound += count
        if self._spool_bound == 0:
            self._spool_empty.set()
        else:
            self._spool_empty.clear()

    def _delivered(self) -> None:
        if self._breaker.state is not BreakerState.CLOSED or self._quiet:
            _log.info("line.delivering", spool_depth=self._spool_bound)
        self._breaker.success()
        self._quiet = False

    def _failed(self, event: str, error: BaseException, **fields: Any) -> None:
        self._failures += 1
        was = self._breaker.state
        self._breaker.failure()
        if not self._quiet:
            self._quiet = True
            _log.warning(event, error=repr(error), spool_depth=self._spool_bound, **fields)
        if self._breaker.state is BreakerState.OPEN and was is not BreakerState.OPEN:
            _log.warning(
                "line.breaker_opened",
                cooldown_s=self._breaker.cooldown_s,
                spool_depth=self._spool_bound,
            )

    def _crashed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            _log.error("line.task_crashed", task=task.get_name(), error=repr(error))

    # --- the connection ---------------------------------------------------------------------

    async def _connect(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "servers": server_urls(s.nats_url),
            "name": f"loupe-line:{s.line_id}",
            "user": s.nats_user or None,
            "password": s.nats_password.get_secret_value() or None,
            "max_reconnect_attempts": -1,
            # nats-py annotates these two as int; it sleeps and waits on them as floats.
            "reconnect_time_wait": s.reconnect_wait_s,
            "connect_timeout": s.connect_timeout_s,
            "ping_interval": s.ping_interval_s,
            "max_outstanding_pings": 2,
            # Bounded: while the link is down the client refuses rather than buffers.
            "pending_size": s.pending_bytes,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        await self._nc.connect(**options)
        # The client's own window is max_in_flight; nats-py's semaphore must never bind.
        self._js = self._nc.jetstream(publish_async_max_pending=1 << 30)
        self._max_bytes = min(self.settings.batch_max_bytes, self._nc.max_payload - 1024)
        _log.info("line.connected", url=s.nats_url)
        self._up()

    def _up(self) -> None:
        # A link that comes back is worth a probe now, whatever the breaker's cooldown.
        self._breaker.probe_now()
        self._link_error_logged = False
        self._replay_wake.set()
        self._nudge.set()

    async def _on_error(self, error: Exception) -> None:
        # nats-py reports every failed reconnect attempt: one warning per outage is enough.
        if self._link_error_logged:
            _log.debug("line.nats_error", error=repr(error))
        else:
            self._link_error_logged = True
            _log.warning("line.nats_error", error=repr(error))

    async def _on_disconnected(self) -> None:
        # Acks on the dropped link will never come: give up on them now, so what follows
        # goes to the spool behind them and publish() stays quick.
        for message in self._pipeline:
            if message.direct and message.ack is not None and not message.ack.done():
                message.ack.cancel()
                if not message.doomed:
                    message.doomed = True
                    self._add_spool_bound(1)
        for ack in self._replay_acks:
            if not ack.done():
                ack.cancel()
        self._drop_unsent_publishes()
        if self._state is _State.RUNNING:
            _log.warning("line.disconnected", spool_depth=self._spool_bound)

    async def _on_reconnected(self) -> None:
        _log.info("line.reconnected", spool_depth=self._spool_bound)
        self._up()

    def _drop_unsent_publishes(self) -> None:
        # Every publish among the commands nats-py had not written when the link dropped
        # belongs to a message whose ack was just given up, which the spool replays in order;
        # written late on the next link, it would land ahead of an earlier message lost with
        # the old link. So they go.
        drop_unsent_publishes(self._nc)


_PUBLISH_VERBS = (b"PUB ", b"HPUB ")


def drop_unsent_publishes(nc: Client) -> int:
    """Drop the publishes nats-py has queued but not yet written; keep every other command
    (SUB, UNSUB, PING, PONG...), in order. Answers how many it dropped.

    The seam into nats-py's internals, the only one this client has. It relies on what the
    pinned nats-py 2.16 does: `Client._pending` is a list of bytes, one protocol command each,
    that the flusher writes (and then empties) on the current link, and that a reconnect
    writes on the new one; `Client._pending_data_size` is an int, the sum of their lengths,
    which the outbound-buffer limit is checked against. If either is missing or of another
    type this does nothing (only the order across an outage may suffer);
    tests/line/test_nats_seam.py fails when the pinned nats-py changes either."""
    pending = getattr(nc, "_pending", None)
    size = getattr(nc, "_pending_data_size", None)
    if not isinstance(pending, list) or not isinstance(size, int):
        return 0
    kept = [c for c in pending if not bytes(c[:5]).startswith(_PUBLISH_VERBS)]
    dropped = len(pending) - len(kept)
    if dropped:
        nc._pending = kept
        nc._pending_data_size = sum(len(c) for c in kept)
    return dropped
