import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from loupe_stack.stack import Stack


async def _admin(platform: Stack, sql: str) -> None:
    e = platform.endpoints
    conn = await asyncpg.connect(
        host=e.pg_host, port=e.pg_port, user=e.pg_user, password=e.pg_password, database="postgres"
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def scratch_database(platform: Stack) -> Iterator[str]:
    """An empty database of the test's own, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(platform, f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        asyncio.run(_admin(platform, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
