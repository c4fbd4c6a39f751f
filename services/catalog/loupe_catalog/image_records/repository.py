"""All SQL about image records."""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from loupe_catalog.tables import image_records, program_revisions, programs


async def upsert(conn: AsyncSession | AsyncConnection, values: dict[str, Any]) -> bool:
    """Record an image once; the first sighting wins (events may arrive twice). Answers
    whether a row was added."""
    statement = (
        insert(image_records)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["sha256"])
        .returning(image_records.c.sha256)
    )
    return (await conn.execute(statement)).first() is not None


async def get(session: AsyncSession, sha256: str) -> RowMapping | None:
    query = sa.select(image_records).where(image_records.c.sha256 == sha256)
    return (await session.execute(query)).mappings().first()


async def references(session: AsyncSession, sha256: str) -> list[RowMapping]:
    """Every program revision that uses the image, with its program's name and state."""
    query = (
        sa.select(
            programs.c.id.label("program_id"),
            programs.c.name,
            programs.c.archived_at,
            programs.c.current_revision,
            program_revisions.c.revision,
        )
        .join(programs, programs.c.id == program_revisions.c.program_id)
        .where(program_revisions.c.master_image_sha256 == sha256)
        .order_by(programs.c.id, program_revisions.c.revision)
    )
    return list((await session.execute(query)).mappings())


async def delete_unreferenced(conn: AsyncConnection, sha256: str) -> bool:
    referenced = sa.exists().where(program_revisions.c.master_image_sha256 == sha256)
    result = await conn.execute(
        sa.delete(image_records).where(image_records.c.sha256 == sha256, ~referenced)
    )
    return bool(result.rowcount)
