"""Maintenance mode: while a restore runs, every service refuses changes (503 with a clear
message) and keeps answering reads.

The notice is one key in a NATS key-value bucket, written by the backup service. Services
read it at most once per `ttl_s` (a lookup is a fraction of a millisecond) and only for
requests that change something. When the bucket cannot be read, the last notice seen holds
until its lease runs out; with no notice seen, writes go on (the restore itself takes the
database's locks, so a missed notice delays writes rather than corrupting them).
"""

import asyncio
import time
from contextlib import suppress
from typing import Any

from fastapi import FastAPI
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from loupe_shared.contracts.backup import MAINTENANCE_KEY, MaintenanceNotice
from loupe_shared.contracts.streams import MAINTENANCE_BUCKET, TOKENS_BUCKET
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.problems import problem_response

_log = get_logger("loupe.maintenance")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bucket_for(tokens_bucket: str) -> str:
    """The maintenance bucket in the same namespace as the token bucket `tokens_bucket`."""
    return tokens_bucket.removesuffix(TOKENS_BUCKET) + MAINTENANCE_BUCKET


async def open_bucket(js: JetStreamContext, bucket: str) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(
            bucket=bucket, history=1, description="Loupe maintenance notices"
        )


async def read_notice(js: JetStreamContext, bucket: str) -> MaintenanceNotice | None:
    try:
        kv = await js.key_value(bucket)
        entry = await kv.get(MAINTENANCE_KEY)
    except (BucketNotFoundError, KeyNotFoundError):
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


class MaintenanceGuard:
    """The current notice of one service, read at most once per `ttl_s`."""

    def __init__(self, ttl_s: float = 1.0, timeout_s: float = 0.5, retry_s: float = 5.0) -> None:
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        # After a failed read the last notice is used this long before trying again, so a
        # NATS outage costs a writer at most `timeout_s` once per `retry_s`.
        self._retry_s = retry_s
        self._next_check = -1e9
        self._notice: MaintenanceNotice | None = None
        self._lock = asyncio.Lock()

    async def current(self, app: FastAPI) -> MaintenanceNotice | None:
        if time.monotonic() >= self._next_check:
            async with self._lock:
                if time.monotonic() >= self._next_check:
                    await self._refresh(app)
        notice = self._notice
        return notice if notice is not None and notice.active else None

    async def _refresh(self, app: FastAPI) -> None:
        js: JetStreamContext | None = getattr(app.state, "js", None)
        tokens: Any = getattr(app.state, "tokens", None)
        if js is None or tokens is None:
            return
        try:
            self._notice = await asyncio.wait_for(
                read_notice(js, bucket_for(tokens._bucket)), timeout=self._timeout_s
            )
        except Exception as exc:
            _log.warning("maintenance.unreadable", error=str(exc) or type(exc).__name__)
            self._next_check = time.monotonic() + self._retry_s
        else:
            self._next_check = time.monotonic() + self._ttl_s


class MaintenanceMiddleware:
    """Answers 503 to requests that would change something while a restore runs."""

    def __init__(self, app: ASGIApp, guard: MaintenanceGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in _SAFE_METHODS
            and scope["path"].startswith("/api/")
        ):
            notice = await self.guard.current(scope["app"])
            if notice is not None:
                retry = max(1, int((notice.lease_until.timestamp() - time.time()) + 1))
                response = problem_response(
                    Request(scope),
                    503,
                    notice.message,
                    title="Under maintenance",
                    headers={"Retry-After": str(min(retry, 30))},
                    maintenance={"restore_id": notice.restore_id, "backup_id": notice.backup_id},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
