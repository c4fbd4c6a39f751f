"""Poison isolation: messages no consumer can handle, published straight into the streams
(bypassing every API check), are set aside on the dead-letter subject with their reason,
while the good messages around them — in the same batch, and after a burst of poison — are
stored within seconds."""

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from loupe_shared.contracts import subjects
from loupe_shared.kit.consumers import DeadLetters, consume
from loupe_shared.kit.nats import connect, ensure_streams
from loupe_shared.kit.settings import NatsSettings
from tests.catalog.helpers import publish
from tests.results.test_results_api import _listed, line, result, viewer
from tests.support import eventually

__all__ = ["line", "viewer"]


def _poisons(line_id: str) -> list[tuple[str, bytes]]:
    def one(**fields: Any) -> bytes:
        return json.dumps({"results": [result(line_id, **fields)]}).encode()

    nested: Any = "leaf"
    for _ in range(500):
        nested = {"n": nested}
    return [
        ("revision beyond int32", one(program_revision=2**31, program_id=str(uuid.uuid4()))),
        ("captured_at overflowing UTC", one(captured_at="0001-01-01T00:00:00+05:00")),
        ("captured_at at the calendar end", one(captured_at="9999-12-31T23:59:59-05:00")),
        (
            "area 1e20",
            one(
                verdict="fail",
                defects=[{"bbox": {"x": 0, "y": 0, "width": 1, "height": 1}, "area": 1e20}],
            ),
        ),
        ("unknown field nested 500 deep", one(vendor=nested)),
        ("NUL in station", one(station="s\x001")),
        ("lone surrogate", one(part_id="SURR").replace(b'"SURR"', b'"\\ud800"')),
        ("not JSON", b"\xff{not json"),
        ("no results", b'{"results": []}'),
    ]


def _dead(nats_settings: NatsSettings, subject: str, since: datetime) -> list[dict[str, str]]:
    async def read() -> list[dict[str, str]]:
        nc = await connect(nats_settings, "tests")
        try:
            sub = await nc.jetstream().pull_subscribe(
                subject, stream="DEADLETTER", config=None, durable=None
            )
            found: list[dict[str, str]] = []
            while True:
                try:
                    batch = await sub.fetch(500, timeout=1)
                except TimeoutError:
                    return found
                for m in batch:
                    if m.metadata.timestamp >= since:
                        found.append({**(m.headers or {}), "data": m.data.decode(errors="replace")})
                    await m.ack()
        finally:
            await nc.close()

    return asyncio.run(read())


def test_poison_results_are_set_aside_and_never_hold_the_rest(
    gateway: httpx.Client,
    nats_settings: NatsSettings,
    line: dict[str, str],
    viewer: dict[str, str],
) -> None:
    line_id = f"line-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC)
    poisons = _poisons(line_id)
    # One batch mixing good results with each poison: the good ones are stored.
    for _, body in poisons:
        publish(nats_settings, subjects.RESULTS_RECORDED, body)
    good = [result(line_id) for _ in range(3)]
    publish(nats_settings, subjects.RESULTS_RECORDED, orjson.dumps({"results": good}))
    started = time.monotonic()
    eventually("good results stored", lambda: len(_listed(gateway, viewer, line_id=line_id)) == 3)
    print(f"poison → next result stored: {time.monotonic() - started:.2f} s")
    listed = {item["result_id"] for item in _listed(gateway, viewer, line_id=line_id)}
    assert listed == {g["result_id"] for g in good}

    dead = _dead(nats_settings, f"{subjects.DEADLETTER}.results", since)
    mine = [d for d in dead if line_id in d["data"] or d["data"] in ("\ufffd{not json", "")]
    assert len([d for d in dead if line_id in d["data"]]) == len(poisons) - 2
    assert all(d["Loupe-Reason"] for d in mine)
    # Every read path still answers for everyone.
    assert gateway.get("/api/results", headers=viewer).status_code == 200
    assert gateway.get("/api/results/stats", headers=viewer).status_code == 200


@pytest.mark.slow
def test_a_burst_of_poison_does_not_delay_a_later_result(
    gateway: httpx.Client,
    nats_settings: NatsSettings,
    line: dict[str, str],
    viewer: dict[str, str],
) -> None:
    line_id = f"line-{uuid.uuid4().hex[:8]}"
    bad = orjson.dumps(
        {"results": [result(line_id, program_revision=2**31, program_id=str(uuid.uuid4()))]}
    )

    async def burst() -> None:
        nc = await connect(nats_settings, "tests")
        try:
            js = nc.jetstream()
            await asyncio.gather(*(js.publish(subjects.RESULTS_RECORDED, bad) for _ in range(300)))
        finally:
            await nc.drain()

    asyncio.run(burst())
    good = result(line_id)
    publish(nats_settings, subjects.RESULTS_RECORDED, orjson.dumps({"results": [good]}))
    took = eventually(
        "the result after 300 poisons stored",
        lambda: len(_listed(gateway, viewer, line_id=line_id)) == 1,
        timeout_s=30,
    )
    print(f"300 poisons, then a result: stored after {took:.2f} s")


def test_the_kit_consumer_sets_aside_a_message_that_keeps_failing(
    nats_settings: NatsSettings,
) -> None:
    """A handler that fails on one message for a reason of its own (not an outage) gets it
    redelivered a bounded number of times, then sets it aside; the messages after it are
    handled meanwhile. A malformed one is set aside at once."""
    namespace = f"poison{uuid.uuid4().hex[:8]}"

    async def run() -> tuple[list[bytes], list[dict[str, str]], float]:
        nc = await connect(nats_settings, "tests")
        js = nc.jetstream()
        await ensure_streams(js, namespace)
        handled: list[bytes] = []

        async def handler(subject: str, data: bytes) -> None:
            if data == b"poison":
                raise RuntimeError("this one cannot be handled")
            if data == b"malformed":
                raise ValueError("not an event")
            handled.append(data)

        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        task = asyncio.create_task(
            consume(
                js,
                stream="AUDIT",
                filter_subject="audit.>",
                durable="poison-test",
                handler=handler,
                namespace=namespace,
                batch=10,
                dead_letters=DeadLetters(registry),
                max_deliveries=2,
            )
        )
        try:
            for body in (b"poison", b"malformed", b"good-1", b"good-2"):
                await js.publish(f"{namespace}.audit.recorded", body)
            started = time.monotonic()
            while len(handled) < 2:
                assert time.monotonic() - started < 15, "good messages not handled"
                await asyncio.sleep(0.05)
            good_after = time.monotonic() - started
            dead: list[dict[str, str]] = []
            sub = await js.pull_subscribe(
                f"{namespace}.{subjects.DEADLETTER}.audit",
                stream=subjects.stream_name("DEADLETTER", namespace),
            )
            while len(dead) < 2:
                assert time.monotonic() - started < 30, f"dead letters: {dead}"
                try:
                    for m in await sub.fetch(10, timeout=1):
                        dead.append({**(m.headers or {}), "data": m.data.decode()})
                except TimeoutError:
                    continue
            counted = {
                s.labels["reason"]: s.value
                for metric in registry.collect()
                for s in metric.samples
                if s.name == "consumer_dead_lettered_total"
            }
            assert counted == {"malformed": 1.0, "failed": 1.0}
            return handled, dead, good_after
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await nc.close()

    handled, dead, good_after = asyncio.run(run())
    assert handled == [b"good-1", b"good-2"]
    assert sorted(d["data"] for d in dead) == ["malformed", "poison"]
    reasons = {d["data"]: d for d in dead}
    assert "failed 2 times" in reasons["poison"]["Loupe-Reason"]
    assert reasons["poison"]["Loupe-Delivered"] == "2"
    assert "malformed" in reasons["malformed"]["Loupe-Reason"]
    print(f"good messages handled {good_after:.2f} s after the poison")
