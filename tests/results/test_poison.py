"""Poison isolation: messages no consumer can handle, published straight into the streams
(bypassing every API check), are set aside on the dead-letter subject with their reason,
while the good messages around them — in the same batch, and after a burst of poison — are
stored within seconds.

The first tests go through the platform's own ingester, where the contract's checks catch
most poison at parse time. The ingester tests below run an ingester of the test's own (own
database, own namespace) whose conversion lets values through unchecked, so the poison
reaches PostgreSQL and the driver as if a check were missing: whatever gets through, the
ingest must not stall."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from loupe_catalog.results.ingest import DURABLE, Ingester
from loupe_catalog.results.rows import KNOWN, Row
from loupe_shared.contracts import subjects
from loupe_shared.kit.consumers import DeadLetters, consume
from loupe_shared.kit.nats import connect, ensure_streams
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.stack import Stack
from tests import poison
from tests.catalog.helpers import publish
from tests.conftest import auth
from tests.results.helpers import listed, result
from tests.support import CuttableProxy, eventually, until


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


def _set_aside_count(platform: Stack, admin_token: str) -> float:
    """The platform catalog's dead-letter count of the result ingest, every reason."""
    answer = httpx.get(
        f"{platform.service_url('catalog')}/metrics", headers=auth(admin_token), timeout=5
    )
    answer.raise_for_status()
    prefix = 'consumer_dead_lettered_total{consumer="catalog-results-ingest"'
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in answer.text.splitlines()
        if line.startswith(prefix)
    )


def test_poison_results_are_set_aside_and_never_hold_the_rest(
    gateway: httpx.Client,
    platform: Stack,
    admin_token: str,
    nats_settings: NatsSettings,
    line: dict[str, str],
    viewer: dict[str, str],
) -> None:
    line_id = f"line-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC)
    counted_before = _set_aside_count(platform, admin_token)
    poisons = _poisons(line_id)
    # One batch mixing good results with each poison: the good ones are stored.
    started = time.monotonic()
    for _, body in poisons:
        publish(nats_settings, subjects.RESULTS_RECORDED, body)
    good = [result(line_id) for _ in range(3)]
    publish(nats_settings, subjects.RESULTS_RECORDED, orjson.dumps({"results": good}))
    eventually("good results stored", lambda: len(listed(gateway, viewer, line_id=line_id)) == 3)
    print(f"first poison published → next result stored: {time.monotonic() - started:.2f} s")
    stored = {item["result_id"] for item in listed(gateway, viewer, line_id=line_id)}
    assert stored == {g["result_id"] for g in good}

    dead = _dead(nats_settings, f"{subjects.DEADLETTER}.results", since)
    mine = [d for d in dead if line_id in d["data"] or d["data"] in ("\ufffd{not json", "")]
    assert len([d for d in dead if line_id in d["data"]]) == len(poisons) - 2
    assert all(d["Loupe-Reason"] for d in mine)
    eventually(
        "every poison counted",
        # At least: the platform's ingester is shared, others' poison may be counted too.
        lambda: _set_aside_count(platform, admin_token) - counted_before >= len(poisons),
        timeout_s=5,
    )
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

    started = time.monotonic()
    asyncio.run(burst())
    good = result(line_id)
    publish(nats_settings, subjects.RESULTS_RECORDED, orjson.dumps({"results": [good]}))
    took = eventually(
        "the result after 300 poisons stored",
        lambda: len(listed(gateway, viewer, line_id=line_id)) == 1,
        timeout_s=30,
    )
    print(
        f"300 poisons, then a result: stored {time.monotonic() - started:.2f} s after the first "
        f"poison was published, {took:.2f} s after its own publish"
    )


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


# --- an ingester of the test's own, with the contract's checks out of the way ---------------


def _lenient(data: bytes) -> list[Row]:
    """Rows as the ingest would build them with no check at all: each field as sent (the
    standard library's JSON parser even keeps lone surrogates). A body `raise:<class>`
    raises that exception class, standing for a conversion that fails in a way nobody
    foresaw."""
    if data.startswith(b"raise:"):
        raise _RAISED[data.removeprefix(b"raise:").decode()]("conversion failed")
    message = json.loads(data)
    found: list[Row] = []
    for r in message["results"]:
        defects = r.get("defects", [])
        extra = {k: v for k, v in r.items() if k not in KNOWN}
        found.append(
            (
                uuid.UUID(r["result_id"]),
                datetime.fromisoformat(r["captured_at"]),
                r["line_id"],
                r.get("station", ""),
                None if r.get("program_id") is None else uuid.UUID(r["program_id"]),
                r.get("program_revision"),
                r.get("part_id", ""),
                r["verdict"],
                r.get("score"),
                json.dumps(defects),
                len(defects),
                r.get("processing_ms"),
                r.get("capture_sha256"),
                r.get("is_simulated", False),
                r.get("reason"),
                json.dumps(extra) if extra else None,
                r.get("schema_version", 1),
            )
        )
    return found


_RAISED: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        OverflowError,
        TypeError,
        KeyError,
        RecursionError,
        ZeroDivisionError,
        RuntimeError,
        asyncpg.DataError,
        asyncpg.InterfaceError,  # a passing class, raised where no database is involved
    )
}


class _Ingest:
    def __init__(self, ns: poison.Namespace, db: asyncpg.Connection) -> None:
        self.ns = ns
        self.db = db
        self.registry = CollectorRegistry()

    async def publish(self, *bodies: bytes) -> int:
        """Answers the stream sequence of the last one."""
        seq = 0
        for body in bodies:
            ack = await self.ns.js.publish(self.ns.subject(subjects.RESULTS_RECORDED), body)
            seq = ack.seq
        return seq

    async def tried(self, seq: int) -> bool:
        """Whether the ingester has fetched the message at `seq` and not acknowledged it."""
        info = await self.ns.js.consumer_info(
            subjects.stream_name("RESULTS", self.ns.name), DURABLE
        )
        return (info.delivered.stream_seq or 0) >= seq > (info.ack_floor.stream_seq or 0)

    async def stored(self, line_id: str) -> set[str]:
        found = await self.db.fetch("SELECT result_id FROM results WHERE line_id = $1", line_id)
        return {str(r["result_id"]) for r in found}

    def counted(self) -> dict[str, float]:
        return poison.dead_lettered(self.registry, DURABLE)


@asynccontextmanager
async def _ingester(
    platform: Stack,
    database: str,
    nats_settings: NatsSettings,
    *,
    db_port: int | None = None,
    max_deliveries: int = 3,
) -> AsyncIterator[_Ingest]:
    settings = poison.migrated(platform, database)
    db = await poison.database(settings)
    await db.execute(poison.refusing_trigger("results", "station"))
    if db_port is not None:
        settings = settings.model_copy(update={"db_port": db_port})
    async with poison.namespace(nats_settings, f"poison{uuid.uuid4().hex[:8]}") as ns:
        rig = _Ingest(ns, db)
        ingester = Ingester(
            settings,
            ns.js,
            namespace=ns.name,
            registry=rig.registry,
            max_deliveries=max_deliveries,
            retry_first_s=0.1,
            convert=_lenient,
        )
        task = asyncio.create_task(ingester.run())
        try:
            yield rig
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await db.close()


def _one(line_id: str, **fields: Any) -> bytes:
    return json.dumps({"results": [result(line_id, **fields)]}).encode()


def test_whatever_the_database_or_the_driver_refuses_is_set_aside_alone(
    platform: Stack, scratch_database: str, nats_settings: NatsSettings
) -> None:
    """Poison of every kind that reaches the driver or PostgreSQL, mixed in one fetch with
    good results: only the poison is set aside, each with its reason and counted by class;
    the good results commit in the same pass."""
    line_id = f"line-{uuid.uuid4().hex[:8]}"
    nested: Any = "leaf"
    for _ in range(500):
        nested = {"n": nested}
    refused = {
        "revision beyond int32": _one(line_id, program_revision=2**31),
        "year 1 with an offset": _one(line_id, captured_at="0001-01-01T00:00:00+05:00"),
        "NUL in station": _one(line_id, station="s\x001"),
        "NUL in an unknown field": _one(line_id, vendor="a\x00b"),
        "lone surrogate": _one(line_id, part_id="SURR").replace(b'"SURR"', b'"\\ud800"'),
        "out of range (22003)": _one(line_id, station="refuse-range"),
        "check violated (23514)": _one(line_id, station="refuse-check"),
        "a value the driver cannot encode": _one(line_id, processing_ms="twelve"),
        "good and poison in one message": json.dumps(
            {"results": [result(line_id), result(line_id, program_revision=2**40)]}
        ).encode(),
    }
    # Says nothing about the values: delivered again, set aside after the bounded count.
    failing = _one(line_id, station="refuse-internal")
    unconvertible = {name: b"raise:" + name.encode() for name in _RAISED}
    unconvertible["not JSON"] = b"\xff{not json"
    good = [result(line_id) for _ in range(4)]
    # Accepted by the database, so stored like any result.
    accepted = [
        result(line_id, extra_nested=nested),
        result(line_id, defects=[{"kind": "x", "area": 1e20}], verdict="fail"),
    ]

    async def run() -> tuple[float, list[tuple[dict[str, str], bytes]], dict[str, float]]:
        async with _ingester(platform, scratch_database, nats_settings) as rig:
            bodies = [*refused.values(), failing, *unconvertible.values()]
            bodies += [json.dumps({"results": [g]}).encode() for g in good + accepted]
            started = time.monotonic()
            await rig.publish(*bodies)
            wanted = {g["result_id"] for g in good + accepted}
            await until("good results stored", lambda: _has(rig, line_id, wanted), 15)
            took = time.monotonic() - started
            expected = len(refused) + 1 + len(unconvertible)

            async def all_dead() -> bool:
                return len(await rig.ns.dead_letters("RESULTS")) >= expected

            await until("poison dead-lettered", all_dead, 15)
            assert await rig.stored(line_id) == wanted
            return took, await rig.ns.dead_letters("RESULTS"), rig.counted()

    took, dead, counted = asyncio.run(run())
    print(f"poison reaching the database → good results of the same fetch stored: {took:.2f} s")
    bodies = {body: headers for headers, body in dead}
    assert set(bodies) == {*refused.values(), failing, *unconvertible.values()}
    for body in refused.values():
        assert bodies[body]["Loupe-Reason"].startswith("refused by the database"), bodies[body]
        assert bodies[body]["Loupe-Delivered"] == "1"
    for body in unconvertible.values():
        assert bodies[body]["Loupe-Reason"].startswith("cannot be converted"), bodies[body]
        assert bodies[body]["Loupe-Delivered"] == "1"
    assert bodies[failing]["Loupe-Reason"].startswith("failed 3 times")
    assert bodies[failing]["Loupe-Delivered"] == "3"
    assert counted == {
        "refused": len(refused),
        "unconvertible": len(unconvertible),
        "failed": 1,
    }


async def _has(rig: _Ingest, line_id: str, wanted: set[str]) -> bool:
    return wanted <= await rig.stored(line_id)


@pytest.mark.slow
def test_a_burst_of_300_refused_results_then_a_good_one(
    platform: Stack, scratch_database: str, nats_settings: NatsSettings
) -> None:
    """300 results the database refuses, then one it takes: the good one is stored within a
    bound, the 300 are in the dead-letter stream and counted."""
    line_id = f"line-{uuid.uuid4().hex[:8]}"

    async def run() -> tuple[float, float, int, dict[str, float]]:
        async with _ingester(platform, scratch_database, nats_settings) as rig:
            bad = [_one(line_id, program_revision=2**31 + i) for i in range(300)]
            started = time.monotonic()
            await asyncio.gather(*(rig.publish(b) for b in bad))
            good = result(line_id)
            await rig.publish(json.dumps({"results": [good]}).encode())
            published = time.monotonic()
            await until(
                "the result after 300 poisons", lambda: _has(rig, line_id, {good["result_id"]}), 30
            )
            stored = time.monotonic()

            async def all_dead() -> bool:
                return len(await rig.ns.dead_letters("RESULTS")) >= 300

            await until("300 dead letters", all_dead, 30)
            return (
                stored - started,
                stored - published,
                len(await rig.ns.dead_letters("RESULTS")),
                rig.counted(),
            )

    from_poison, from_good, dead, counted = asyncio.run(run())
    print(
        f"300 refused results, then a good one: stored {from_poison:.2f} s after the first "
        f"poison was published, {from_good:.2f} s after its own publish"
    )
    assert dead == 300
    assert counted == {"refused": 300}


def test_an_outage_sets_nothing_aside_and_a_message_that_keeps_failing_is_set_aside(
    platform: Stack, scratch_database: str, nats_settings: NatsSettings
) -> None:
    """The database taken away (every connection cut, new ones refused): results published
    meanwhile wait and are stored once it is back, and nothing is set aside. A message
    whose store keeps failing with a passing SQLSTATE is set aside after the bounded count
    of deliveries, never holding the messages of its batch meanwhile."""
    line_id = f"line-{uuid.uuid4().hex[:8]}"
    e = platform.endpoints
    proxy = CuttableProxy(e.pg_host, e.pg_port)

    async def run() -> tuple[list[tuple[dict[str, str], bytes]], dict[str, float], float]:
        async with _ingester(
            platform, scratch_database, nats_settings, db_port=proxy.port, max_deliveries=3
        ) as rig:
            first = result(line_id)
            await rig.publish(json.dumps({"results": [first]}).encode())
            await until("first stored", lambda: _has(rig, line_id, {first["result_id"]}), 15)
            proxy.cut()
            during = [result(line_id) for _ in range(5)]
            seq = await rig.publish(*(json.dumps({"results": [r]}).encode() for r in during))
            # Fetched while the database was away, not stored, nothing set aside.
            await until("tried during the outage", lambda: rig.tried(seq - 4), 15)
            assert await rig.ns.dead_letters("RESULTS") == []
            proxy.restore()
            wanted = {r["result_id"] for r in during}
            await until("stored after the outage", lambda: _has(rig, line_id, wanted), 20)
            assert await rig.ns.dead_letters("RESULTS") == []
            assert rig.counted() == {}

            forever = _one(line_id, station="away-forever")
            after = [result(line_id) for _ in range(3)]
            started = time.monotonic()
            await rig.publish(forever, *(json.dumps({"results": [a]}).encode() for a in after))
            wanted = {a["result_id"] for a in after}
            await until("stored beside it", lambda: _has(rig, line_id, wanted), 20)
            took = time.monotonic() - started

            async def set_aside() -> bool:
                return len(await rig.ns.dead_letters("RESULTS")) == 1

            await until("set aside after bounded deliveries", set_aside, 30)
            return await rig.ns.dead_letters("RESULTS"), rig.counted(), took

    try:
        dead, counted, took = asyncio.run(run())
    finally:
        proxy.close()
    print(f"results beside a message that keeps failing stored after {took:.2f} s")
    [(headers, body)] = dead
    assert b"away-forever" in body
    assert headers["Loupe-Delivered"] == "4"
    assert "delivered 4 times" in headers["Loupe-Reason"]
    assert counted == {"redelivered": 1}
