"""All SQL about programs and their revisions."""

import uuid
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from loupe_catalog import pagination
from loupe_catalog.tables import program_revisions, programs


async def lock(session: AsyncSession, program_id: uuid.UUID) -> bool:
    """Lock the program row for this transaction. Locked alone, not through the join with
    its revision: a join re-checked after a concurrent update would lose the row."""
    query = sa.select(programs.c.id).where(programs.c.id == program_id).with_for_update()
    return (await session.execute(query)).first() is not None


async def get(session: AsyncSession, program_id: uuid.UUID) -> RowMapping | None:
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


def parse_sort_key(sort: str, raw: Any) -> Any:
    if sort.lstrip("-") == "name":
        if not isinstance(raw, str):
            raise ValueError("name key")
        return raw
    return pagination.time_key(raw)


# --- hot read paths, on the plain asyncpg pool -------------------------------------------

# The config as PostgreSQL writes its JSON: the answer embeds that text as it is, rather
# than decoding it into Python values only to encode them again.
_PROGRAM_SQL = """
SELECT p.*, r.config::text AS config_json, r.schema_version
FROM programs p
JOIN program_revisions r ON r.program_id = p.id AND r.revision = p.current_revision
WHERE p.id = $1
"""
_SORT_SQL = {"name": "lower(name)", "created_at": "created_at", "updated_at": "updated_at"}


async def fetch(pool: asyncpg.Pool, program_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(_PROGRAM_SQL, program_id)
    return row


async def fetch_page(
    pool: asyncpg.Pool,
    *,
    sort: str,
    after: tuple[Any, str] | None,
    limit: int,
    search: str | None,
    tag: str | None,
    archived: str,
) -> list[asyncpg.Record]:
    """A page of programs after the cursor's key; each filter shape is one prepared
    statement (asyncpg caches them per connection)."""
    key = _SORT_SQL[sort.lstrip("-")]
    descending = sort.startswith("-")
    where: list[str] = []
    args: list[Any] = []
    if archived == "false":
        where.append("archived_at IS NULL")
    elif archived == "true":
        where.append("archived_at IS NOT NULL")
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args.append(f"%{escaped}%")
        where.append(f"name ILIKE ${len(args)} ESCAPE '\\'")
    if tag:
        args.append([tag])
        where.append(f"tags @> ${len(args)}::text[]")
    if after is not None:
        args += [after[0], uuid.UUID(after[1])]
        where.append(f"({key}, id) {'<' if descending else '>'} (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    direction = "DESC" if descending else "ASC"
    # Only constant fragments are joined here; every value is a parameter.
    columns = (
        "id, name, description, tags, archived_at IS NOT NULL AS archived, "
        "current_revision AS revision, master_image_sha256, data_checksum, created_at, "
        f"updated_at, {key} AS sort_key"
    )
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    order = f"ORDER BY {key} {direction}, id {direction} LIMIT ${len(args)}"
    sql = f"SELECT {columns} FROM programs {condition}{order}"  # noqa: S608
    return list(await pool.fetch(sql, *args))
