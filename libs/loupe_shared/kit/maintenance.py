"""Maintenance mode: while a restore runs, every service refuses changes (503 with a clear
message and `Retry-After`) and keeps answering reads.

The notice is one key in a NATS key-value bucket, written by the backup service. The fence
around a restore:

1. the restore writes the notice;
2. every service instance reads it (a loop reads it at once when the notice's key changes —
   a core subscription to the key's subject hears each write — and every `poll_s` in any
   case; a write request also reads it when the last read is older than `ttl_s`), refuses
   every write from then on, waits until the writes it had admitted have been answered, and
   then acknowledges the notice under `ack.<service>.<instance>`;
3. the restore waits (bounded) until every live instance (`live.<service>.<instance>`,
   renewed every `heartbeat_s`) has acknowledged — looking again when an acknowledgement is
   heard, and every 0.05 s in any case — and only then takes its restore point.

What is heard on the subjects only wakes a reader up: every decision is taken on what was
read from the bucket, so a missed or early message costs time, never the fence.

So a write answered 2xx is either finished before the restore point is taken or refused. An
instance that cannot read the bucket for `PRESENCE_TTL_S` refuses writes by itself (its
heartbeat is then as old, and the restore counts it as gone). Authentication comes first: a
request without a valid token gets its 401, never the notice.
"""

import asyncio
import time
import uuid
from contextlib import suppress
from datetime import UTC, datetime

from fastapi import FastAPI
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loupe_shared.contracts.backup import (
    ACK_PREFIX,
    LIVE_PREFIX,
    MAINTENANCE_KEY,
    PRESENCE_TTL_S,
    InstanceBeat,
    MaintenanceNotice,
)
from loupe_shared.contracts.streams import MAINTENANCE_BUCKET, TOKENS_BUCKET
from loupe_shared.kit.auth import authenticate_request
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.nats import bucket_keys, key_subject
from loupe_shared.kit.problems import Problem, problem_response
from loupe_shared.kit.state import kit_state
from loupe_shared.kit.tasks import cancel_and_wait

_log = get_logger("loupe.maintenance")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The longest the restore waits before it looks at the acknowledgements again.
FENCE_LOOK_S = 0.05


def bucket_for(tokens_bucket: str) -> str:
    """The maintenance bucket in the same namespace as the token bucket `tokens_bucket`."""
    return tokens_bucket.removesuffix(TOKENS_BUCKET) + MAINTENANCE_BUCKET


async def open_bucket(js: JetStreamContext, bucket: str, replicas: int = 1) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(
            bucket=bucket, history=1, description="Loupe maintenance notices", replicas=replicas
        )


async def read_notice(kv: KeyValue) -> MaintenanceNotice | None:
    try:
        entry = await kv.get(MAINTENANCE_KEY)
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    return MaintenanceNotice.model_validate_json(entry.value)


async def announce(js: JetStreamContext, bucket: str, notice: MaintenanceNotice) -> None:
    """Start (or renew) maintenance."""
    kv = await open_bucket(js, bucket)
    await kv.put(MAINTENANCE_KEY, notice.model_dump_json().encode())


async def withdraw(js: JetStreamContext, bucket: str) -> None:
    kv = await open_bucket(js, bucket)
    with suppress(KeyNotFoundError):
        await kv.delete(MAINTENANCE_KEY)


class FenceNotReached(Exception):
    """Some live service instance did not acknowledge the notice in time."""


async def beats(
    js: JetStreamContext, bucket: str, kv: KeyValue, prefix: str
) -> dict[str, InstanceBeat]:
    found: dict[str, InstanceBeat] = {}
    for key in await bucket_keys(js, bucket, prefix):
        with suppress(KeyNotFoundError):
            entry = await kv.get(key)
            if entry.value:
                found[key.removeprefix(prefix)] = InstanceBeat.model_validate_json(entry.value)
    return found


async def await_fence(
    nc: Client, js: JetStreamContext, bucket: str, restore_id: str, timeout_s: float
) -> list[str]:
    """Wait until every live instance acknowledged the notice of `restore_id` (or is gone);
    answer the instances that did. Raise `FenceNotReached` naming the others after
    `timeout_s`."""
    kv = await open_bucket(js, bucket)
    heard = asyncio.Event()

    async def acknowledged(_: Msg) -> None:
        heard.set()

    # Subscribed before the first look, on the connection the look's reads take (the server
    # takes one connection's commands in order): an acknowledgement the look missed is heard.
    subscription = await nc.subscribe(key_subject(bucket, ACK_PREFIX + ">"), cb=acknowledged)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            heard.clear()
            now = datetime.now(UTC)
            live = {
                name
                for name, beat in (await beats(js, bucket, kv, LIVE_PREFIX)).items()
                if (now - beat.at).total_seconds() < PRESENCE_TTL_S
            }
            acked = {
                n
                for n, b in (await beats(js, bucket, kv, ACK_PREFIX)).items()
                if b.restore_id == restore_id
            }
            waiting = sorted(live - acked)
            if not waiting:
                return sorted(acked)
            if time.monotonic() >= deadline:
                raise FenceNotReached(
                    "these services did not stop their writes in time: " + ", ".join(waiting)
                )
            with suppress(TimeoutError):
                async with asyncio.timeout(FENCE_LOOK_S):
                    await heard.wait()
    finally:
        with suppress(Exception):
            await subscription.unsubscribe()


class MaintenanceGuard:
    """One service instance's view of the notice, the writes it has admitted, and its
    acknowledgement of a notice once none of them is left."""

    def __init__(
        self,
        ttl_s: float = 1.0,
        timeout_s: float = 0.5,
        retry_s: float = 2.0,
        poll_s: float = 0.2,
        heartbeat_s: float = 2.0,
    ) -> None:
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        # After a failed read the last notice is used this long before trying again, so a
        # NATS outage costs a writer at most `timeout_s` once per `retry_s`.
        self._retry_s = retry_s
        self._poll_s = poll_s
        self._heartbeat_s = heartbeat_s
        self.instance = uuid.uuid4().hex[:12]
        self._next_check = -1e9
        self._last_read: float | None = None
        self._notice: MaintenanceNotice | None = None
        self._lock = asyncio.Lock()
        self.in_flight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._acked: str | None = None
        self._loop: asyncio.Task[None] | None = None
        self._bucket: KeyValue | None = None
        # Set when a write of the notice's key is heard: the loop reads the notice at once.
        self._changed = asyncio.Event()
        self._listening: Subscription | None = None

    async def current(self, app: FastAPI) -> MaintenanceNotice | None:
        if time.monotonic() >= self._next_check:
            async with self._lock:
                if time.monotonic() >= self._next_check:
                    await self._refresh(app)
        return self.notice()

    def notice(self) -> MaintenanceNotice | None:
        notice = self._notice
        return notice if notice is not None and notice.active else None

    def blind(self) -> bool:
        """True when the notice could not be read for PRESENCE_TTL_S (writes are refused)."""
        return self._last_read is not None and time.monotonic() - self._last_read > PRESENCE_TTL_S

    def admit(self) -> None:
        self.in_flight += 1
        self._drained.clear()

    def release(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._drained.set()

    async def _refresh(self, app: FastAPI) -> None:
        if kit_state(app).messaging is None:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                self._notice = await self._read(app)
        except Exception as exc:
            _log.warning("maintenance.unreadable", error=str(exc) or type(exc).__name__)
            self._next_check = time.monotonic() + self._retry_s
        else:
            self._last_read = time.monotonic()
            self._next_check = time.monotonic() + self._ttl_s

    async def _read(self, app: FastAPI) -> MaintenanceNotice | None:
        # One round trip on the bucket opened once (not a lookup of the bucket each time).
        kv = await self._kv(app)
        return None if kv is None else await read_notice(kv)

    # --- the loop that heartbeats and acknowledges --------------------------------------------

    def start(self, app: FastAPI) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._run(app), name="maintenance-guard")

    async def stop(self, app: FastAPI) -> None:
        if self._loop is None:
            return
        await cancel_and_wait([self._loop])
        self._loop = None
        if self._listening is not None:
            with suppress(Exception):
                await self._listening.unsubscribe()
            self._listening = None
        with suppress(Exception):
            async with asyncio.timeout(self._timeout_s):
                kv = await self._kv(app)
            if kv is not None:
                async with asyncio.timeout(self._timeout_s):
                    await kv.delete(self._key(app, LIVE_PREFIX))

    async def _kv(self, app: FastAPI) -> KeyValue | None:
        # Opened once and kept: a heartbeat is then one round trip, not two, which keeps it
        # on time on a loaded machine (an instance whose heartbeat lapses is not waited for).
        if self._bucket is not None:
            return self._bucket
        messaging = kit_state(app).messaging
        if messaging is None:
            return None
        self._bucket = await open_bucket(messaging.js, bucket_for(messaging.tokens.bucket))
        return self._bucket

    async def _listen(self, app: FastAPI) -> None:
        """Subscribe (once) to the notice key's subject; a write of it wakes the loop."""
        messaging = kit_state(app).messaging
        if self._listening is not None or messaging is None:
            return

        async def changed(_: Msg) -> None:
            self._changed.set()

        subject = key_subject(bucket_for(messaging.tokens.bucket), MAINTENANCE_KEY)
        self._listening = await messaging.nats.subscribe(subject, cb=changed)

    def _key(self, app: FastAPI, prefix: str) -> str:
        return f"{prefix}{kit_state(app).service}.{self.instance}"

    def _beat(self, app: FastAPI, restore_id: str | None = None) -> bytes:
        beat = InstanceBeat(
            service=kit_state(app).service,
            instance=self.instance,
            at=datetime.now(UTC),
            restore_id=restore_id,
        )
        return beat.model_dump_json().encode()

    async def _run(self, app: FastAPI) -> None:
        beat_at = -1e9
        while True:
            self._changed.clear()
            try:
                # First, so the heartbeat below is written after it (on the same connection):
                # whoever sees the heartbeat may count on a write of the notice being heard.
                await self._listen(app)
            except Exception as exc:  # the polls below go on without it
                _log.warning("maintenance.unheard", error=str(exc) or type(exc).__name__)
            try:
                async with self._lock:
                    await self._refresh(app)
                notice = self.notice()
                async with asyncio.timeout(self._timeout_s):
                    kv = await self._kv(app)
                if notice is not None and notice.restore_id != self._acked and kv is not None:
                    await self._drained.wait()
                    await kv.put(self._key(app, ACK_PREFIX), self._beat(app, notice.restore_id))
                    self._acked = notice.restore_id
                    _log.info("maintenance.acknowledged", restore_id=notice.restore_id)
                if kv is not None and time.monotonic() - beat_at >= self._heartbeat_s:
                    await kv.put(self._key(app, LIVE_PREFIX), self._beat(app))
                    beat_at = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("maintenance.loop_failed", error=str(exc) or type(exc).__name__)
            with suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):
                    await self._changed.wait()


class MaintenanceMiddleware:
    """Answers 503 to requests that would change something while a restore runs (after
    authenticating them), and counts the writes it lets through."""

    def __init__(self, app: ASGIApp, guard: MaintenanceGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if not (
            scope["type"] == "http"
            and scope["method"] not in _SAFE_METHODS
            and scope["path"].startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        notice = await self.guard.current(scope["app"])
        if notice is None and not self.guard.blind():
            # Admitted without an await after the check: the guard's loop cannot acknowledge
            # a notice between the two.
            self.guard.admit()
            try:
                await self.app(scope, receive, send)
            finally:
                self.guard.release()
            return
        request = Request(scope)
        try:
            await authenticate_request(request)
        except Problem as exc:
            refused = problem_response(
                request, exc.status, exc.detail, title=exc.title, headers=exc.headers
            )
            await refused(scope, receive, send)
            return
        if notice is None:
            response = problem_response(
                request,
                503,
                "Whether a restore is running cannot be checked right now; try again shortly.",
                title="Under maintenance",
                headers={"Retry-After": "5"},
            )
        else:
            retry = max(1, int((notice.lease_until.timestamp() - time.time()) + 1))
            response = problem_response(
                request,
                503,
                notice.message,
                title="Under maintenance",
                headers={"Retry-After": str(min(retry, 30))},
                maintenance={"restore_id": notice.restore_id, "backup_id": notice.backup_id},
            )
        await response(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["app"]
        # Background writers (event consumers, the result ingest) started by the service's
        # lifespan hold back through the kit state's guard (see kit.consumers.fenced).
        kit_state(app).maintenance = self.guard

        async def watched_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.guard.start(app)
            await send(message)

        async def watched_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.guard.stop(app)
            return message

        await self.app(scope, watched_receive, watched_send)
