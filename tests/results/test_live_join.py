"""The live feed's subscription is on the server before `join` returns: the stream endpoint
joins, then reads what the reader missed from the database, so a result recorded after that
read must reach the listener — including for the first listener, whose join subscribes. And
listeners that join together share one subscription."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson

from loupe_catalog.results.live import Listener, LiveFeed
from loupe_shared.contracts import subjects
from loupe_shared.kit.nats import connect, settled
from loupe_shared.kit.settings import NatsSettings

ROUNDS = 200
Record = Callable[[dict[str, Any]], Awaitable[None]]


def _result(line_id: str) -> dict[str, Any]:
    return {
        "result_id": str(uuid.uuid4()),
        "line_id": line_id,
        "verdict": "pass",
        "captured_at": datetime.now(UTC).isoformat(),
    }


@asynccontextmanager
async def _feed(nats_settings: NatsSettings) -> AsyncIterator[tuple[LiveFeed, Record]]:
    """A live feed on a connection of its own, in a namespace of its own, and a way to record a
    result from another connection (published and on the server when it returns)."""
    namespace = f"live{uuid.uuid4().hex[:8]}"
    subject = subjects.subject(subjects.RESULTS_RECORDED, namespace)
    catalog = await connect(nats_settings, "tests-live-feed")
    ingest = await connect(nats_settings, "tests-live-ingest")

    async def record(result: dict[str, Any]) -> None:
        await ingest.publish(subject, orjson.dumps({"results": [result]}))
        await settled(ingest)

    try:
        yield LiveFeed(catalog, namespace), record
    finally:
        await ingest.close()
        await catalog.close()


async def _next(listener: Listener) -> dict[str, Any] | None:
    try:
        return await asyncio.wait_for(listener.queue.get(), timeout=2)
    except TimeoutError:
        return None


async def test_the_first_listener_hears_a_result_recorded_right_after_it_joined(
    nats_settings: NatsSettings,
) -> None:
    missed = []
    async with _feed(nats_settings) as (feed, record):
        for n in range(ROUNDS):
            listener = await feed.join(None, None)
            assert listener is not None
            result = _result(f"line-{n}")
            await record(result)
            heard = await _next(listener)
            if heard is None or heard["result_id"] != result["result_id"]:
                missed.append(n)
            await feed.leave(listener)  # the last one: the subscription goes
            assert feed._subscription is None
    assert missed == []


async def test_listeners_joining_together_share_one_subscription(
    nats_settings: NatsSettings,
) -> None:
    async with _feed(nats_settings) as (feed, record):
        listeners = await asyncio.gather(*(feed.join(None, None) for _ in range(20)))
        first, second = _result("line-a"), _result("line-b")
        await record(first)
        await record(second)
        for listener in listeners:
            assert listener is not None
            heard = [await _next(listener), await _next(listener)]
            # Two subscriptions would offer each result twice: first, first, second, second.
            assert [h and h["result_id"] for h in heard] == [
                first["result_id"],
                second["result_id"],
            ]
        # Leaving together, while others join: the subscription stays while anyone listens.
        late = feed.join(None, None)
        left = [feed.leave(listener) for listener in listeners if listener is not None]
        joined, *_ = await asyncio.gather(late, *left)
        assert joined is not None
        third = _result("line-c")
        await record(third)
        heard_late = await _next(joined)
        assert heard_late is not None
        assert heard_late["result_id"] == third["result_id"]
        await feed.leave(joined)
        assert feed._subscription is None
