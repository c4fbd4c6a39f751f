"""Monthly partitions of `results`, created ahead of time by the ingester."""

from datetime import UTC, datetime

import asyncpg

from loupe_shared.kit.logging import get_logger

_log = get_logger("catalog.results.partitions")
MONTHS_AHEAD = 3


def _month(year: int, month: int) -> tuple[int, int]:
    year += (month - 1) // 12
    return year, (month - 1) % 12 + 1


async def ensure(conn: asyncpg.Connection, now: datetime | None = None) -> list[str]:
    """Create the partitions of last month to `MONTHS_AHEAD` months ahead where missing.
    A month that already has rows in the default partition is left there (answered as
    skipped in the log). Answers the partitions created."""
    now = now or datetime.now(UTC)
    created = []
    for offset in range(-1, MONTHS_AHEAD + 1):
        year, month = _month(now.year, now.month + offset)
        next_year, next_month = _month(year, month + 1)
        name = f"results_{year:04d}_{month:02d}"
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
        if exists:
            continue
        start = f"{year:04d}-{month:02d}-01 00:00:00+00"
        end = f"{next_year:04d}-{next_month:02d}-01 00:00:00+00"
        try:
            await conn.execute(
                f"CREATE TABLE {name} PARTITION OF results FOR VALUES FROM ('{start}') TO ('{end}')"
            )
            created.append(name)
        except (asyncpg.CheckViolationError, asyncpg.DuplicateTableError) as exc:
            _log.info("results.partition_skipped", partition=name, reason=str(exc))
    if created:
        _log.info("results.partitions_created", partitions=created)
    return created
