"""All SQL about golden sets and their test runs."""

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from loupe_catalog.golden.tables import golden_images, golden_runs


async def images(session: AsyncSession, program_id: uuid.UUID, revision: int) -> list[RowMapping]:
    query = (
        sa.select(golden_images)
        .where(golden_images.c.program_id == program_id, golden_images.c.revision == revision)
        .order_by(golden_images.c.label, golden_images.c.added_at, golden_images.c.capture_sha256)
    )
    return list((await session.execute(query)).mappings())


async def count(session: AsyncSession, program_id: uuid.UUID, revision: int) -> int:
    query = sa.select(sa.func.count()).where(
        golden_images.c.program_id == program_id, golden_images.c.revision == revision
    )
    return int((await session.execute(query)).scalar_one())


async def upsert(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Attach an image or change its label and note; answers whether it was new."""
    statement = insert(golden_images).values(**values)
    upsert: Any = statement.on_conflict_do_update(
        index_elements=["program_id", "revision", "capture_sha256"],
        set_={"label": statement.excluded.label, "note": statement.excluded.note},
    ).returning(sa.literal_column("xmax = 0").label("inserted"))
    return bool((await session.execute(upsert)).scalar_one())


async def remove(session: AsyncSession, program_id: uuid.UUID, revision: int, sha256: str) -> bool:
    statement = sa.delete(golden_images).where(
        golden_images.c.program_id == program_id,
        golden_images.c.revision == revision,
        golden_images.c.capture_sha256 == sha256,
    )
    result: Any = await session.execute(statement)
    return bool(result.rowcount)


async def insert_run(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(golden_runs).values(**values))


async def runs(
    session: AsyncSession, program_id: uuid.UUID, revision: int, limit: int
) -> list[RowMapping]:
    query = (
        sa.select(golden_runs)
        .where(golden_runs.c.program_id == program_id, golden_runs.c.revision == revision)
        .order_by(golden_runs.c.started_at.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).mappings())


async def run(session: AsyncSession, run_id: uuid.UUID) -> RowMapping | None:
    query = sa.select(golden_runs).where(golden_runs.c.id == run_id)
    return (await session.execute(query)).mappings().first()
