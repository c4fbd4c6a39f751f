"""The restore fence's wake-up: an instance reads the maintenance notice at once when it is
written (a core subscription to the notice key's subject), not at its next poll. Here the
guard polls once an hour and beats once an hour; the restore's wait for its acknowledgement
gives up after 8 s, while the guard's one heartbeat still counts it as live (10 s): without
the wake-up it is never acknowledged and the fence is not reached."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from nats.js.errors import KeyNotFoundError
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


async def test_a_guard_polling_once_an_hour_acknowledges_a_notice_when_it_is_written(
    nats_settings: NatsSettings,
) -> None:
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
        guard.start(app)
        # Its first round: it read the notice (none) and beat once; then it sleeps.
        live_key = f"{LIVE_PREFIX}tests.{guard.instance}"

        async def beaten() -> bool:
            try:
                return bool((await kv.get(live_key)).value)
            except KeyNotFoundError:
                return False

        await until("the guard's first heartbeat", beaten)
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
        acked = await maintenance.await_fence(nc, js, bucket, restore_id, FENCE_TIMEOUT_S)
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
    finally:
        await guard.stop(app)
        await js.delete_key_value(bucket)
        await nc.close()


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
