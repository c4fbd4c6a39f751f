"""All SQL about programs and their revisions."""

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from loupe_catalog.tables import image_records, program_revisions, programs

_SORT_COLUMNS: dict[str, Any] = {
    "name": sa.func.lower(programs.c.name),
    "created_at": programs.c.created_at,
    "updated_at": programs.c.updated_at,
}


async def get(
    session: AsyncSession, program_id: uuid.UUID, *, for_update: bool = False
) -> RowMapping | None:
    query = (
        sa.select(programs, program_revisions.c.config, program_revisions.c.schema_version)
        .join(
            program_revisions,
            sa.and_(
                program_revisions.c.program_id == programs.c.id,
                program_revisions.c.revision == programs.c.current_revision,
            ),
        )
        .where(programs.c.id == program_id)
    )
    if for_update:
        query = query.with_for_update(of=programs)
    return (await session.execute(query)).mappings().first()


async def get_by_legacy_id(session: AsyncSession, legacy_id: str) -> RowMapping | None:
    query = sa.select(programs.c.id).where(programs.c.legacy_id == legacy_id)
    return (await session.execute(query)).mappings().first()


async def active_name_taken(
    session: AsyncSession, name: str, *, other_than: uuid.UUID | None = None
) -> bool:
    query = sa.select(programs.c.id).where(
        sa.func.lower(programs.c.name) == name.lower(), programs.c.archived_at.is_(None)
    )
    if other_than is not None:
        query = query.where(programs.c.id != other_than)
    return (await session.execute(query.limit(1))).first() is not None


async def insert(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(programs).values(**values))


async def update(session: AsyncSession, program_id: uuid.UUID, values: dict[str, Any]) -> None:
    await session.execute(
        sa.update(programs)
        .where(programs.c.id == program_id)
        .values(**values, version=programs.c.version + 1)
    )


async def insert_revision(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(program_revisions).values(**values))


async def get_revision(
    session: AsyncSession, program_id: uuid.UUID, revision: int
) -> RowMapping | None:
    query = sa.select(program_revisions).where(
        program_revisions.c.program_id == program_id, program_revisions.c.revision == revision
    )
    return (await session.execute(query)).mappings().first()


async def list_revisions(
    session: AsyncSession, program_id: uuid.UUID, *, before: int | None, limit: int
) -> list[RowMapping]:
    query = (
        sa.select(
            program_revisions.c.revision,
            program_revisions.c.name,
            program_revisions.c.master_image_sha256,
            program_revisions.c.data_checksum,
            program_revisions.c.created_at,
            program_revisions.c.created_by,
            program_revisions.c.message,
        )
        .where(program_revisions.c.program_id == program_id)
        .order_by(program_revisions.c.revision.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(program_revisions.c.revision < before)
    return list((await session.execute(query)).mappings())


async def list_page(
    session: AsyncSession,
    *,
    sort: str,
    after: tuple[Any, str] | None,
    limit: int,
    search: str | None,
    tag: str | None,
    archived: str,
) -> list[RowMapping]:
    descending = sort.startswith("-")
    key = _SORT_COLUMNS[sort.lstrip("-")]
    query = sa.select(
        programs.c.id,
        programs.c.name,
        programs.c.description,
        programs.c.tags,
        programs.c.archived_at,
        programs.c.current_revision,
        programs.c.master_image_sha256,
        programs.c.data_checksum,
        programs.c.created_at,
        programs.c.updated_at,
        key.label("sort_key"),
    )
    if archived == "false":
        query = query.where(programs.c.archived_at.is_(None))
    elif archived == "true":
        query = query.where(programs.c.archived_at.is_not(None))
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(programs.c.name.ilike(f"%{escaped}%", escape="\\"))
    if tag:
        query = query.where(programs.c.tags.contains([tag]))
    if after is not None:
        last_key, last_id = after
        pair = sa.tuple_(key, programs.c.id)
        bound = sa.tuple_(sa.literal(last_key), sa.literal(uuid.UUID(last_id)))
        query = query.where(pair < bound if descending else pair > bound)
    order = (key.desc(), programs.c.id.desc()) if descending else (key.asc(), programs.c.id.asc())
    query = query.order_by(*order).limit(limit)
    return list((await session.execute(query)).mappings())


async def image_known(session: AsyncSession, sha256: str) -> bool:
    query = sa.select(image_records.c.sha256).where(image_records.c.sha256 == sha256)
    return (await session.execute(query)).first() is not None


def parse_sort_key(sort: str, raw: Any) -> Any:
    if sort.lstrip("-") == "name":
        if not isinstance(raw, str):
            raise ValueError("name key")
        return raw
    if not isinstance(raw, str):
        raise ValueError("time key")
    return datetime.fromisoformat(raw)
