"""What the poison tests share: a migrated database and a NATS namespace of the test's own, a
way to make PostgreSQL itself refuse chosen rows, the dead letters and the dead-letter count.

The refusals come from the database, not from a stand-in: a trigger raises the SQLSTATE a
real refusal (or outage) carries for rows whose text column holds a marker."""

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import asyncpg
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from loupe_shared.contracts import streams, subjects
from loupe_shared.kit.nats import connect, ensure_streams
from loupe_shared.kit.settings import DatabaseSettings, NatsSettings
from loupe_stack.stack import Stack
from tests.databases import Databases

# Markers a text column can carry, and the SQLSTATE the trigger answers them with.
REFUSALS = {
    "refuse-range": "22003",  # numeric_value_out_of_range: a data exception, set aside at once
    "refuse-check": "23514",  # check_violation: refused for a reason of the row
    "refuse-internal": "XX000",  # internal_error: a failure of its own, bounded redelivery
    "away-forever": "57P03",  # cannot_connect_now: passing, never set aside as refused
}
# A row with this text keeps its statement waiting 30 s: a handler that does not return.
HANG = "hang"


def refusing_trigger(table: str, column: str) -> str:
    """SQL that makes `table` refuse the rows whose `column` holds a marker of REFUSALS,
    and hang on HANG."""
    branches = "\n".join(
        f"  {'IF' if i == 0 else 'ELSIF'} NEW.{column} = '{marker}' THEN "
        f"RAISE EXCEPTION 'test refusal {marker}' USING ERRCODE = '{state}';"
        for i, (marker, state) in enumerate(REFUSALS.items())
    )
    return f"""
CREATE OR REPLACE FUNCTION refuse_poison_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{branches}
  ELSIF NEW.{column} = '{HANG}' THEN
    PERFORM pg_sleep(30);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON {table}
  FOR EACH ROW EXECUTE FUNCTION refuse_poison_{table}();
"""


def migrated(
    platform: Stack, database: str, databases: Databases | None = None
) -> DatabaseSettings:
    """Bring `database` (new and empty) to the catalog's newest schema and answer the settings
    that reach it. With `databases` (the session fixture) it becomes a copy of the migrated
    template, made again under the same name; without, `loupe_catalog migrate` runs on it."""
    if databases is not None:
        databases.drop(database)
        databases.create(database)
    else:
        subprocess.run(
            [sys.executable, "-m", "loupe_catalog", "migrate"],
            env={**platform.service_env("catalog"), "CATALOG_DB_NAME": database},
            check=True,
            capture_output=True,
        )
    e = platform.endpoints
    return DatabaseSettings(
        db_host=e.pg_host,
        db_port=e.pg_port,
        db_user=e.pg_user,
        db_password=SecretStr(e.pg_password),
        db_name=database,
    )


async def database(settings: DatabaseSettings) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password.get_secret_value(),
        database=settings.db_name,
    )
    return conn


@dataclass
class Namespace:
    nc: Client
    js: JetStreamContext
    name: str

    def subject(self, subject: str) -> str:
        return subjects.subject(subject, self.name)

    async def dead_letters(self, stream: str) -> list[tuple[dict[str, str], bytes]]:
        """Every dead letter of `stream` so far: headers and body."""
        sub = await self.js.pull_subscribe(
            self.subject(f"{subjects.DEADLETTER}.{stream.lower()}"),
            stream=subjects.stream_name("DEADLETTER", self.name),
        )
        found: list[tuple[dict[str, str], bytes]] = []
        try:
            while True:
                try:
                    batch = await sub.fetch(500, timeout=0.5)
                except TimeoutError:
                    return found
                found.extend((dict(m.headers or {}), m.data) for m in batch)
        finally:
            with suppress(Exception):
                await sub.unsubscribe()


@asynccontextmanager
async def namespace(nats_settings: NatsSettings, name: str) -> AsyncIterator[Namespace]:
    """Every stream Loupe uses, under `name`, removed afterwards."""
    nc = await connect(nats_settings, "tests")
    js = nc.jetstream()
    await ensure_streams(js, name)
    try:
        yield Namespace(nc, js, name)
    finally:
        for spec in streams.STREAMS:
            with suppress(Exception):
                await js.delete_stream(subjects.stream_name(spec.name, name))
        await nc.close()


def dead_lettered(registry: CollectorRegistry, consumer: str) -> dict[str, float]:
    """`consumer_dead_lettered_total` of one consumer, by reason."""
    return {
        sample.labels["reason"]: sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "consumer_dead_lettered_total" and sample.labels["consumer"] == consumer
    }
