"""The restore fence's wake-up: an instance reads the maintenance notice at once when it is
written (a core subscription to the notice key's subject), not at its next poll. Here the
guard polls once an hour and beats once an hour; the restore's wait for its acknowledgement
gives up after 8 s, while the guard's one heartbeat still counts it as live (10 s): without
the wake-up it is never acknowledged and the fence is not reached."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from loupe_shared.contracts.backup import LIVE_PREFIX, MaintenanceNotice
from loupe_shared.contracts.streams import TOKENS_BUCKET
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit import maintenance
from loupe_shared.kit.auth import TokenStore
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings, ServiceSettings
from loupe_shared.kit.state import KitState, Messaging, install
from tests.support import until

FENCE_TIMEOUT_S = 8.0


class Polled(ServiceSettings):
    """A service's settings, read from `TESTS_*` as each service reads its own prefix."""

    model_config = SettingsConfigDict(env_prefix="TESTS_", extra="ignore", frozen=True)


@dataclass
class Guarded:
    guard: maintenance.MaintenanceGuard
    app: FastAPI
    nc: Client
    js: JetStreamContext
    bucket: str
    kv: KeyValue

    async def beaten(self) -> bool:
        """The guard's heartbeat is in the bucket."""
        try:
            return bool((await self.kv.get(f"{LIVE_PREFIX}tests.{self.guard.instance}")).value)
        except KeyNotFoundError:
            return False


@asynccontextmanager
async def guarded(nats_settings: NatsSettings) -> AsyncIterator[Guarded]:
    """A guard polling once an hour and beating once an hour, on a bucket of its own."""
    nc = await connect(nats_settings, "tests-maintenance-wakeup")
    js = nc.jetstream()
    tokens = stream_name(TOKENS_BUCKET, f"t{uuid.uuid4().hex[:8]}")
    bucket = maintenance.bucket_for(tokens)
    app = FastAPI()
    install(
        app,
        KitState(
            service="tests",
            registry=CollectorRegistry(),
            messaging=Messaging(nats=nc, js=js, tokens=TokenStore(js, tokens)),
        ),
    )
    guard = maintenance.MaintenanceGuard(poll_s=3600, heartbeat_s=3600)
    kv = await maintenance.open_bucket(js, bucket)
    try:
        yield Guarded(guard, app, nc, js, bucket, kv)
    finally:
        await guard.stop(app)
        await js.delete_key_value(bucket)
        await nc.close()


async def test_a_guard_polling_once_an_hour_acknowledges_a_notice_when_it_is_written(
    nats_settings: NatsSettings,
) -> None:
    async with guarded(nats_settings) as g:
        guard, js, bucket = g.guard, g.js, g.bucket
        guard.start(g.app)
        # Its first round: it read the notice (none) and beat once; then it sleeps.
        await until("the guard's first heartbeat", g.beaten)
        assert guard.notice() is None

        restore_id = uuid.uuid4().hex
        written = datetime.now(UTC)
        notice = MaintenanceNotice(
            restore_id=restore_id,
            backup_id=uuid.uuid4().hex,
            started_at=written,
            lease_until=written + timedelta(seconds=60),
        )
        await maintenance.announce(js, bucket, notice)
        acked = await maintenance.await_fence(g.nc, js, bucket, restore_id, FENCE_TIMEOUT_S)
        assert acked == [f"tests.{guard.instance}"]
        seen = guard.notice()
        assert seen is not None
        assert seen.restore_id == restore_id

        # Withdrawn: heard the same way, the instance takes writes again.
        await maintenance.withdraw(js, bucket)

        async def lifted() -> bool:
            return guard.notice() is None

        # Bounded well below the guard's hour-long poll: only the wake-up can lift it.
        await until("the notice lifted", lifted)


async def test_one_cancellation_stops_the_guard_even_as_its_wake_up_comes(
    nats_settings: NatsSettings,
) -> None:
    """At shutdown the guard's loop is cancelled once. On Python 3.11 `asyncio.wait_for`
    returns the result of a wait that ends as its caller is cancelled, losing the
    cancellation: the loop went on, and a service waited for it forever (seen once, in a
    whole run of the suite). Here the cancellation comes right after the wake-up that a write
    of the notice gives, in each of five rounds."""
    async with guarded(nats_settings) as g:
        for round_ in range(5):
            await g.kv.purge(f"{LIVE_PREFIX}tests.{g.guard.instance}")
            g.guard.start(g.app)
            # Beaten: the round is over and the loop waits for a wake-up or its next poll.
            await until(f"round {round_}: the guard's heartbeat", g.beaten)
            loop = g.guard._loop
            assert loop is not None
            g.guard._changed.set()  # what hearing a write of the notice does
            await asyncio.sleep(0)  # the wait ends...
            loop.cancel()  # ...as the loop is cancelled
            await asyncio.wait([loop], timeout=30)
            try:
                assert loop.cancelled(), f"round {round_}: the loop went on"
            finally:
                await g.guard.stop(g.app)


@pytest.mark.parametrize(
    "value", ["0", "-1", "nan", "inf", "61", "1e308", "0.2\x00", "", "x", "2" * 400]
)
def test_the_poll_setting_refuses_what_is_not_a_bounded_interval(value: str) -> None:
    # Given as the text an environment variable holds (one cannot hold NUL at all; the
    # value is handed over directly here so that case is checked too).
    with pytest.raises(ValidationError):
        Polled(maintenance_poll_s=value)


def test_the_poll_setting_takes_an_interval_up_to_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Polled().maintenance_poll_s == 0.2
    monkeypatch.setenv("TESTS_MAINTENANCE_POLL_S", "60")
    assert Polled().maintenance_poll_s == 60.0
