"""The transactional outbox: events are rows written with the change, relayed after commit."""

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from loupe_catalog.tables import outbox
from loupe_shared.contracts.events import Event

# Set in a session's `info` when it wrote an outbox row: its commit wakes the relay.
PENDING = "outbox_pending"


async def enqueue(session: AsyncSession, subject: str, event: Event) -> None:
    session.info[PENDING] = True
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


async def backlog(conn: AsyncConnection) -> tuple[int, float]:
    """Rows not relayed yet, and the age in seconds of the oldest (0 when none); both read
    through the partial index on pending rows."""
    pending = sa.select(outbox.c.id).where(outbox.c.published_at.is_(None))
    count = (await conn.execute(sa.select(sa.func.count()).select_from(pending.subquery()))).one()
    oldest = (
        await conn.execute(
            sa.select(sa.func.extract("epoch", sa.func.now() - outbox.c.created_at))
            .where(outbox.c.published_at.is_(None))
            .order_by(outbox.c.id)
            .limit(1)
        )
    ).scalar()
    return int(count[0]), max(0.0, float(oldest or 0.0))
