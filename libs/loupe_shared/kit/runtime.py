"""What every service holds for its lifetime: the NATS connection and the token store."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from loupe_shared.contracts.streams import TOKENS_BUCKET
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit.auth import TokenStore
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings
from loupe_shared.kit.state import Messaging, kit_state

_log = get_logger("loupe.runtime")


@asynccontextmanager
async def nats_and_tokens(
    app: FastAPI, settings: NatsSettings, name: str
) -> AsyncIterator[Messaging]:
    """Connect to NATS for the app's lifetime; the connection, its JetStream context and the
    token store, also kept in the kit's state for its dependencies."""
    nc = await connect(settings, name)
    js = nc.jetstream()
    tokens = TokenStore(
        js, stream_name(TOKENS_BUCKET, settings.namespace), cache_ttl_s=settings.token_cache_ttl_s
    )
    messaging = Messaging(nats=nc, js=js, tokens=tokens)
    state = kit_state(app)
    state.messaging = messaging
    try:
        yield messaging
    finally:
        # Draining waits for every subscription to settle; a pull subscription cut off
        # mid-fetch can keep it waiting, so shutting down is bounded.
        try:
            async with asyncio.timeout(5):
                await nc.drain()
        except TimeoutError:
            _log.warning("nats.drain_timed_out")
            await nc.close()


async def check_nats(request: Request) -> None:
    nc = kit_state(request.app).connected().nats
    if not nc.is_connected:
        raise RuntimeError("not connected to NATS")
    await nc.flush(timeout=2)


async def check_tokens(request: Request) -> None:
    await kit_state(request.app).connected().tokens.check()
