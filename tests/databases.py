"""Databases with the catalog's whole schema, for installations of the tests' own.

Migrating a database means a subprocess and every Alembic revision (about 1.5 s here); a copy of
a database migrated once per session (`CREATE DATABASE … TEMPLATE`) is the same schema, made by
PostgreSQL in a few milliseconds. The migrations themselves are tested on their own
(`tests/catalog/test_migrations.py`) and by the session's platform, which migrates its own
database at start-up."""

import asyncio
import subprocess
import sys
import uuid

import asyncpg

from loupe_stack.stack import Stack


def sql(platform: Stack, database: str, statement: str) -> list[asyncpg.Record]:
    """Run one statement straight on the platform's PostgreSQL, outside any service."""

    async def run() -> list[asyncpg.Record]:
        conn = await platform.endpoints.pg_connect(database)
        try:
            return list(await conn.fetch(statement))
        finally:
            await conn.close()

    return asyncio.run(run())


class Databases:
    """Migrated databases copied from one template, made on first use."""

    def __init__(self, platform: Stack) -> None:
        self.platform = platform
        self.template: str | None = None
        self.made: list[str] = []

    def _template(self) -> str:
        if self.template is None:
            name = f"t_template_{uuid.uuid4().hex[:8]}"
            sql(self.platform, "postgres", f'CREATE DATABASE "{name}"')
            subprocess.run(
                [sys.executable, "-m", "loupe_catalog", "migrate"],
                env={**self.platform.service_env("catalog"), "CATALOG_DB_NAME": name},
                check=True,
                capture_output=True,
            )
            # Nobody may connect to a template while it is copied, and nobody needs to.
            sql(self.platform, "postgres", f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            self.template = name
        return self.template

    def create(self, name: str | None = None) -> str:
        """A new database at the newest revision; answers its name."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        sql(self.platform, "postgres", f'CREATE DATABASE "{name}" TEMPLATE "{self._template()}"')
        self.made.append(name)
        return name

    def drop(self, name: str) -> None:
        sql(self.platform, "postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        for name in [*self.made, *([self.template] if self.template else [])]:
            self.drop(name)
