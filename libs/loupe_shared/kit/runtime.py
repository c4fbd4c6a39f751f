"""What every service holds for its lifetime: the NATS connection and the token store."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from nats.aio.client import Client

from loupe_shared.contracts.streams import TOKENS_BUCKET
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit.auth import TokenStore
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings

_log = get_logger("loupe.runtime")


@asynccontextmanager
async def nats_and_tokens(app: FastAPI, settings: NatsSettings, name: str) -> AsyncIterator[None]:
    nc = await connect(settings, name)
    js = nc.jetstream()
    app.state.nats = nc
    app.state.js = js
    app.state.tokens = TokenStore(
        js,
        stream_name(TOKENS_BUCKET, settings.namespace),
        cache_ttl_s=settings.token_cache_ttl_s,
    )
    try:
        yield
    finally:
        # Draining waits for every subscription to settle; a pull subscription cut off
        # mid-fetch can keep it waiting, so shutting down is bounded.
        try:
            await asyncio.wait_for(nc.drain(), 5)
        except TimeoutError:
            _log.warning("nats.drain_timed_out")
            await nc.close()


async def check_nats(request: Request) -> None:
    nc: Client = request.app.state.nats
    if not nc.is_connected:
        raise RuntimeError("not connected to NATS")
    await nc.flush(timeout=2)


async def check_tokens(request: Request) -> None:
    store: TokenStore = request.app.state.tokens
    await store.check()
