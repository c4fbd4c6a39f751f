"""Database engine and the per-request session: the request boundary commits, nothing else.
Inside a request, code only `flush()`es; on an error everything rolls back."""

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from loupe_shared.kit.settings import DatabaseSettings
from loupe_shared.kit.state import kit_state


def create_engine(settings: DatabaseSettings, application_name: str) -> AsyncEngine:
    return create_async_engine(
        settings.database_url(),
        pool_size=settings.db_pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": {"application_name": application_name}},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with kit_state(request.app).database()() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


# scope="function": the commit happens before the answer is sent, so a client that got a
# 2xx reads what it wrote, and a failed commit is answered as an error, not a success.
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def _no_reset(_: asyncpg.Connection) -> None:
    return None


def _connect_args(settings: DatabaseSettings, application_name: str) -> dict[str, Any]:
    return {
        "host": settings.db_host,
        "port": settings.db_port,
        "user": settings.db_user,
        "password": settings.db_password.get_secret_value() or None,
        "database": settings.db_name,
        "server_settings": {"application_name": application_name},
    }


async def connect(settings: DatabaseSettings, application_name: str) -> asyncpg.Connection:
    """One plain asyncpg connection, for long-running workers (ingest, backups)."""
    conn: asyncpg.Connection = await asyncpg.connect(**_connect_args(settings, application_name))
    return conn


async def create_read_pool(settings: DatabaseSettings, application_name: str) -> asyncpg.Pool:
    """A plain asyncpg pool for hot read paths, where SQLAlchemy's per-query overhead is most
    of the cost (see docs/performance.md). JSON columns decode to Python values."""

    async def init(conn: asyncpg.Connection) -> None:
        for type_name in ("json", "jsonb"):
            await conn.set_type_codec(
                type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )

    pool: asyncpg.Pool = await asyncpg.create_pool(
        **_connect_args(settings, application_name),
        min_size=2,
        max_size=settings.db_pool_size,
        init=init,
        # Only single read statements run here: no session state to reset on release.
        reset=_no_reset,
    )
    return pool


async def create_kept_pool(
    settings: DatabaseSettings, application_name: str, max_size: int
) -> asyncpg.Pool:
    """A plain asyncpg pool for a worker's occasional jobs: connections are opened when first
    needed and kept between jobs (idle ones closed after five minutes), so a job does not wait
    for a new connection (5 ms alone, up to 40 ms beside the job's other work)."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        **_connect_args(settings, application_name),
        min_size=0,
        max_size=max_size,
        max_inactive_connection_lifetime=300.0,
    )
    return pool


async def get_read_pool(request: Request) -> asyncpg.Pool:
    return kit_state(request.app).reads()


ReadPool = Annotated[asyncpg.Pool, Depends(get_read_pool)]
