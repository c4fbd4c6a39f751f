"""The bare baseline for catalog reads: FastAPI + psycopg, one SELECT per request (a
primary-key read, or the same list query), no auth, no gateway, no validation.

`python -m bench.baseline_app DSN PORT`
"""

import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool


def build(dsn: str) -> FastAPI:
    pool = AsyncConnectionPool(
        dsn, min_size=4, max_size=10, open=False, kwargs={"row_factory": dict_row}
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/programs/{program_id}")
    async def get_program(program_id: uuid.UUID) -> dict[str, Any]:
        async with pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT p.id, p.name, p.description, p.tags, p.current_revision, r.config "
                "FROM programs p JOIN program_revisions r "
                "ON r.program_id = p.id AND r.revision = p.current_revision WHERE p.id = %s",
                (program_id,),
            )
            row: dict[str, Any] | None = await cursor.fetchone()  # type: ignore[assignment]
        if row is None:
            raise HTTPException(404)
        return row

    @app.get("/programs")
    async def list_programs(tag: str, limit: int = 50) -> dict[str, Any]:
        async with pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT id, name, description, tags, archived_at, current_revision, "
                "master_image_sha256, data_checksum, created_at, updated_at FROM programs "
                "WHERE archived_at IS NULL AND tags @> %s::text[] "
                "ORDER BY lower(name), id LIMIT %s",
                ([tag], limit),
            )
            rows = await cursor.fetchall()
        return {"items": rows}

    return app


if __name__ == "__main__":
    uvicorn.run(build(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
