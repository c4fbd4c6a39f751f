"""The append-only audit log (the database refuses updates and deletes)."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from loupe_catalog.tables import audit_log


async def record(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(audit_log).values(**values))


async def record_once(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Append an event from another service; a redelivered event is not appended twice."""
    statement = (
        insert(audit_log).values(**values).on_conflict_do_nothing(index_elements=["event_id"])
    )
    await conn.execute(statement)


async def list_page(
    session: AsyncSession,
    *,
    actor: str | None,
    target: str | None,
    action: str | None,
    request_id: str | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[RowMapping]:
    query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if actor:
        query = query.where(audit_log.c.actor == actor)
    if target:
        query = query.where(audit_log.c.target == target)
    if action:
        query = query.where(audit_log.c.action == action)
    if request_id:
        query = query.where(audit_log.c.request_id == request_id)
    if since:
        query = query.where(audit_log.c.at >= since)
    if until:
        query = query.where(audit_log.c.at < until)
    if before_id is not None:
        query = query.where(audit_log.c.id < before_id)
    return list((await session.execute(query)).mappings())
