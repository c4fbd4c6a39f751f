"""Poison in the catalog's event consumers (image records, audit), published straight into
their streams: each runs as the catalog runs it (the kit's consumer and the real handler) on
a database of the test's own, where a trigger makes PostgreSQL refuse chosen rows. Malformed
events and data exceptions are set aside at once, a failure of the row's own after bounded
deliveries, an outage never; the events behind them are recorded meanwhile."""

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from loupe_catalog.audit import tasks as audit_tasks
from loupe_catalog.image_records import tasks as image_record_tasks
from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import AuditRecorded, ImageStored
from loupe_shared.kit import db
from loupe_shared.kit.consumers import DeadLetters, consume
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.stack import Stack
from tests import poison
from tests.catalog.helpers import random_sha
from tests.databases import Databases
from tests.support import CuttableProxy, until

MAX_DELIVERIES = 3


@dataclass(frozen=True)
class Case:
    stream: str
    filter_subject: str
    subject: str
    durable: str
    handler: Callable[[AsyncEngine], Callable[[str, bytes], Any]]
    table: str
    column: str  # the text column the trigger looks at
    event: Callable[[str], bytes]  # an event whose `column` holds the text given
    count: str  # SQL counting the recorded events of a marker (:marker)


def _image(line_id: str) -> bytes:
    event = ImageStored(
        sha256=random_sha(), size=10, width=2, height=3, content_type="image/png", kind="capture"
    )
    # Built past the model, so the text reaches the handler as sent.
    return json.dumps({**json.loads(event.model_dump_json()), "line_id": line_id}).encode()


def _audit(target: str) -> bytes:
    event = AuditRecorded(
        actor="tests", actor_token_id=None, role="admin", action="poison.test", target="-"
    )
    return json.dumps({**json.loads(event.model_dump_json()), "target": target}).encode()


CASES = {
    "image-records": Case(
        "IMAGES",
        "images.>",
        subjects.IMAGES_STORED,
        image_record_tasks.DURABLE,
        image_record_tasks.handler,
        "image_records",
        "line_id",
        _image,
        "SELECT count(*) FROM image_records WHERE line_id LIKE :marker",
    ),
    "audit": Case(
        "AUDIT",
        "audit.>",
        subjects.AUDIT_RECORDED,
        audit_tasks.DURABLE,
        audit_tasks.handler,
        "audit_log",
        "target",
        _audit,
        "SELECT count(*) FROM audit_log WHERE target LIKE :marker",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_poison_is_set_aside_and_the_events_behind_it_are_recorded(
    name: str,
    platform: Stack,
    scratch_database: str,
    nats_settings: NatsSettings,
    databases: Databases,
) -> None:
    case = CASES[name]
    marker = f"good-{uuid.uuid4().hex[:8]}"
    settings = poison.migrated(platform, scratch_database, databases)
    malformed = {
        "not JSON": b"\xff{not json",
        "wrong shape": json.dumps({"sha256": 5, "actor": []}).encode(),
        "NUL in text": case.event("a\x00b"),
        "nested 500 deep": json.dumps(
            {**json.loads(case.event("deep")), "vendor": _nested(500)}
        ).encode(),
    }
    refused = case.event("refuse-range")  # SQLSTATE 22003: set aside at once
    failing = [case.event("refuse-check"), case.event("refuse-internal")]  # after 3 deliveries
    away = case.event("away-forever")  # passing: retried, never set aside for it

    async def run() -> tuple[float, list[tuple[dict[str, str], bytes]], dict[str, float], int]:
        conn = await poison.database(settings)
        await conn.execute(poison.refusing_trigger(case.table, case.column))
        await conn.close()
        engine = db.create_engine(settings, "poison-tests")
        registry = CollectorRegistry()
        async with poison.namespace(nats_settings, f"poison{uuid.uuid4().hex[:8]}") as ns:
            task = _consumer(case, ns, engine, registry)
            try:
                subject = ns.subject(case.subject)
                started = time.monotonic()
                for body in [*malformed.values(), refused, *failing, away]:
                    await ns.js.publish(subject, body)
                for i in range(5):
                    await ns.js.publish(subject, case.event(f"{marker}-{i}"))

                async def recorded() -> bool:
                    return await _recorded(case, engine, marker, 5)

                await until("the events behind the poison recorded", recorded, 15)
                took = time.monotonic() - started
                expected = len(malformed) + 1 + len(failing)

                async def all_dead() -> bool:
                    return len(await ns.dead_letters(case.stream)) >= expected

                await until("poison dead-lettered", all_dead, 20)
                info = await ns.js.consumer_info(
                    subjects.stream_name(case.stream, ns.name), case.durable
                )
                return (
                    took,
                    await ns.dead_letters(case.stream),
                    registry_counts(registry),
                    (info.num_ack_pending),
                )
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await engine.dispose()

    def registry_counts(registry: CollectorRegistry) -> dict[str, float]:
        return poison.dead_lettered(registry, case.durable)

    took, dead, counted, pending = asyncio.run(run())
    print(f"{name}: poison published → the events behind it recorded: {took:.2f} s")
    reasons = {body: headers for headers, body in dead}
    assert set(reasons) == {*malformed.values(), refused, *failing}
    assert all(reasons[body]["Loupe-Reason"].startswith("malformed") for body in malformed.values())
    assert (
        "22003" in reasons[refused]["Loupe-Reason"] or "refusal" in reasons[refused]["Loupe-Reason"]
    )
    assert reasons[refused]["Loupe-Delivered"] == "1"
    for body in failing:
        assert reasons[body]["Loupe-Reason"].startswith(f"failed {MAX_DELIVERIES} times")
        assert reasons[body]["Loupe-Delivered"] == str(MAX_DELIVERIES)
    # The one failing for a passing reason is still waiting for its next delivery.
    assert away not in reasons
    assert pending == 1
    assert counted == {"malformed": len(malformed), "refused": 1, "failed": len(failing)}


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


def _consumer(
    case: Case, ns: poison.Namespace, engine: AsyncEngine, registry: CollectorRegistry, **kw: Any
) -> "asyncio.Task[None]":
    return asyncio.create_task(
        consume(
            ns.js,
            stream=case.stream,
            filter_subject=case.filter_subject,
            durable=case.durable,
            handler=case.handler(engine),
            namespace=ns.name,
            batch=20,
            dead_letters=DeadLetters(registry),
            max_deliveries=MAX_DELIVERIES,
            retry_first_s=0.2,
            **kw,
        )
    )


async def _recorded(case: Case, engine: AsyncEngine, marker: str, count: int) -> bool:
    async with engine.connect() as c:
        found: int | None = await c.scalar(text(case.count), {"marker": f"{marker}-%"})
    return found == count


def test_an_outage_sets_nothing_aside_and_a_hung_handler_does_not_hold_the_rest(
    platform: Stack, scratch_database: str, nats_settings: NatsSettings, databases: Databases
) -> None:
    """The database cut away while events arrive: they are retried, none is set aside, and
    all are recorded once it is back. Then an event whose statement never returns: it is cut
    at the handler's time limit and retried, and the events behind it are recorded."""
    case = CASES["audit"]
    marker = f"good-{uuid.uuid4().hex[:8]}"
    settings = poison.migrated(platform, scratch_database, databases)
    e = platform.endpoints
    proxy = CuttableProxy(e.pg_host, e.pg_port)

    async def run() -> tuple[float, dict[str, float]]:
        conn = await poison.database(settings)
        await conn.execute(poison.refusing_trigger(case.table, case.column))
        await conn.close()
        engine = db.create_engine(settings.model_copy(update={"db_port": proxy.port}), "tests")
        check = db.create_engine(settings, "poison-tests")
        registry = CollectorRegistry()
        async with poison.namespace(nats_settings, f"poison{uuid.uuid4().hex[:8]}") as ns:
            task = _consumer(case, ns, engine, registry, handler_timeout_s=1.0)
            subject = ns.subject(case.subject)
            try:
                await ns.js.publish(subject, case.event(f"{marker}-0"))
                await until("first", lambda: _recorded(case, check, marker, 1), 15)
                proxy.cut()
                first = await ns.js.publish(subject, case.event(f"{marker}-1"))
                for i in range(2, 6):
                    await ns.js.publish(subject, case.event(f"{marker}-{i}"))

                async def tried() -> bool:
                    info = await ns.js.consumer_info(
                        subjects.stream_name(case.stream, ns.name), case.durable
                    )
                    return (info.num_redelivered or 0) > 0 and (
                        info.ack_floor.stream_seq or 0
                    ) < first.seq

                await until("retried during the outage", tried, 15)
                assert await ns.dead_letters(case.stream) == []
                proxy.restore()
                await until("after the outage", lambda: _recorded(case, check, marker, 6), 30)
                assert await ns.dead_letters(case.stream) == []

                await ns.js.publish(subject, case.event(poison.HANG))
                started = time.monotonic()
                for i in range(6, 9):
                    await ns.js.publish(subject, case.event(f"{marker}-{i}"))
                await until("behind the hung one", lambda: _recorded(case, check, marker, 9), 15)
                took = time.monotonic() - started
                assert await ns.dead_letters(case.stream) == []
                return took, poison.dead_lettered(registry, case.durable)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await engine.dispose()
                await check.dispose()

    try:
        took, counted = asyncio.run(run())
    finally:
        proxy.close()
    print(f"events behind a handler that hangs recorded after {took:.2f} s")
    assert counted == {}
