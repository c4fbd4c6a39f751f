"""What the kit keeps on an app for its lifetime, typed, in one place.

`create_app` puts a `KitState` on the app; `nats_and_tokens` fills in the connection, the
maintenance middleware its guard, and a service with a database its session factory and
read pool. The kit's dependencies and middleware read it through `kit_state`, and a service
keeps its own state in a typed holder of its own (see each service's `state.py`): nothing
else reads or writes `app.state`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg
from fastapi import FastAPI
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from loupe_shared.kit.auth import TokenStore
    from loupe_shared.kit.maintenance import MaintenanceGuard


@dataclass(frozen=True)
class Messaging:
    """The service's NATS connection, its JetStream context and the token store on it."""

    nats: Client
    js: JetStreamContext
    tokens: TokenStore


@dataclass
class KitState:
    service: str
    registry: CollectorRegistry
    messaging: Messaging | None = None
    maintenance: MaintenanceGuard | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None
    read_pool: asyncpg.Pool | None = None
    # Called once the server stops taking requests and before it waits for those under way
    # (`serve`): a request that waits for something (a reader waiting for new results) is
    # answered now instead of holding the shutdown for its whole time.
    on_drain: list[Callable[[], None]] = field(default_factory=list)

    def connected(self) -> Messaging:
        """The connection; only a service whose lifespan has not connected yet has none."""
        if self.messaging is None:
            raise RuntimeError(f"{self.service} is not connected to NATS")
        return self.messaging

    def database(self) -> async_sessionmaker[AsyncSession]:
        if self.sessions is None:
            raise RuntimeError(f"{self.service} has no database sessions")
        return self.sessions

    def reads(self) -> asyncpg.Pool:
        if self.read_pool is None:
            raise RuntimeError(f"{self.service} has no read pool")
        return self.read_pool


def install(app: FastAPI, state: KitState) -> None:
    app.state.kit = state


def kit_state(app: FastAPI) -> KitState:
    state: KitState = app.state.kit
    return state
