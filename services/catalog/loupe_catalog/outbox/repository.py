"""The transactional outbox: events are rows written with the change, relayed after commit."""

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from loupe_catalog.tables import outbox
from loupe_shared.contracts.events import Event


async def enqueue(session: AsyncSession, subject: str, event: Event) -> None:
    await session.execute(
        sa.insert(outbox).values(
            event_id=event.event_id,
            subject=subject,
            payload=event.model_dump(mode="json"),
        )
    )


async def claim(conn: AsyncConnection, limit: int) -> list[RowMapping]:
    """Lock the oldest pending rows; rows another relay holds are skipped, not waited for."""
    query = (
        sa.select(outbox.c.id, outbox.c.event_id, outbox.c.subject, outbox.c.payload)
        .where(outbox.c.published_at.is_(None))
        .order_by(outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(query)).mappings())


async def mark_published(conn: AsyncConnection, ids: list[int]) -> None:
    await conn.execute(
        sa.update(outbox)
        .where(outbox.c.id.in_(ids))
        .values(published_at=sa.func.now(), attempts=outbox.c.attempts + 1)
    )
