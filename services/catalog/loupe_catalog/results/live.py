"""The live feed: one NATS subscription on `results.recorded`, fanned out to every open
`GET /api/results/stream`. A listener that reads too slowly loses the oldest results (and is
told how many), never slows the others."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from loupe_catalog.results.rows import storable
from loupe_shared.contracts import subjects
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.nats import settled

_log = get_logger("catalog.results.live")
QUEUE = 1000
# Put on a listener's queue to wake its feed when it is closed (compared by identity).
CLOSED: dict[str, Any] = {}


@dataclass(eq=False)
class Listener:
    line_id: str | None
    verdict: str | None
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE)
    )
    dropped: int = 0
    closed: bool = False

    def close(self) -> None:
        """End this listener's feed (the server is shutting down): its reader reconnects,
        elsewhere, and gets what it missed with `Last-Event-ID`."""
        self.closed = True
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(CLOSED)

    def offer(self, result: dict[str, Any]) -> None:
        if self.closed:
            return
        if self.line_id is not None and result.get("line_id") != self.line_id:
            return
        if self.verdict is not None and result.get("verdict") != self.verdict:
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(result)


class LiveFeed:
    def __init__(self, nc: Client, namespace: str, max_listeners: int = 200) -> None:
        self.nc = nc
        self.namespace = namespace
        self.max_listeners = max_listeners
        self.listeners: set[Listener] = set()
        self._subscription: Subscription | None = None
        # Held while the subscription is made or removed: a listener joining meanwhile waits
        # for it to be on the server, and a second one is never made.
        self._subscribing = asyncio.Lock()
        self.closing = False

    def close(self) -> None:
        """The server is shutting down: every open feed ends now (instead of holding the
        shutdown until its grace runs out), and none is opened from here on."""
        self.closing = True
        for listener in list(self.listeners):
            listener.close()

    async def _on_message(self, msg: Msg) -> None:
        try:
            results = orjson.loads(msg.data)["results"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if not isinstance(results, list):
            return
        # Only what the ingest would store: a result beyond the bounds (published straight
        # into the stream) could not even be written to the feed.
        shown = [result for result in results if storable(result)]
        for listener in list(self.listeners):
            for result in shown:
                listener.offer(result)

    async def join(self, line_id: str | None, verdict: str | None) -> Listener | None:
        """A new listener, or None when the feed is full or closing. Once it returns, the
        subscription is on the server: a result recorded from then on reaches the listener
        (the stream reads what its reader missed from the database only after joining)."""
        if len(self.listeners) >= self.max_listeners or self.closing:
            return None
        listener = Listener(line_id, verdict)
        self.listeners.add(listener)  # before any wait: a leave meanwhile keeps the subscription
        try:
            await self._subscribe()
        except BaseException:
            await self.leave(listener)
            raise
        return listener

    async def _subscribe(self) -> None:
        """Make the feed's subscription unless it exists, and wait until the server has it."""
        async with self._subscribing:
            if self._subscription is not None:
                return
            self._subscription = await self.nc.subscribe(
                subjects.subject(subjects.RESULTS_RECORDED, self.namespace), cb=self._on_message
            )
            if not self.nc.is_connected:
                return  # the client makes it again first thing on reconnecting
            try:
                await settled(self.nc)
            except NatsError as exc:
                # Cut off meanwhile: made again on reconnecting, as above.
                _log.warning("results.live_unsettled", error=repr(exc))

    async def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        async with self._subscribing:
            if not self.listeners and self._subscription is not None:
                subscription, self._subscription = self._subscription, None
                await subscription.unsubscribe()
