"""A namespace of the test's own on the platform's NATS (all of Loupe's streams in it) and
line-client settings pointed at it."""

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from loupe_line.settings import LineSettings
from loupe_shared.contracts.streams import STREAMS
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit.nats import connect, ensure_streams
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.stack import Stack

SettingsFactory = Callable[..., LineSettings]


@pytest.fixture
async def namespace(nats_settings: NatsSettings) -> AsyncIterator[str]:
    ns = "t" + uuid.uuid4().hex[:8]
    nc = await connect(nats_settings, "tests-line")
    try:
        js = nc.jetstream()
        await ensure_streams(js, ns)
        yield ns
        for spec in STREAMS:
            await js.delete_stream(stream_name(spec.name, ns))
    finally:
        await nc.close()


@pytest.fixture
def line_settings(platform: Stack, namespace: str, tmp_path: Path) -> SettingsFactory:
    """Settings for a line client in the test's namespace; keywords override any field."""

    def make(**overrides: Any) -> LineSettings:
        e = platform.endpoints
        values: dict[str, Any] = {
            "nats_url": e.nats_url,
            "nats_user": e.nats_user,
            "nats_password": e.nats_password,
            "namespace": namespace,
            "line_id": "L1",
            "spool_path": tmp_path / "spool.sqlite3",
            **overrides,
        }
        return LineSettings(**values)

    return make
