"""Result queries (plain asyncpg: these are the hot reads)."""

import uuid
from datetime import datetime
from typing import Any

import asyncpg

SELECT = (
    "SELECT result_id, line_id, station, program_id, program_revision, part_id, verdict, "
    "score, defects, processing_ms, captured_at, capture_sha256, is_simulated, reason, "
    "extra, schema_version, recorded_at FROM results"
)


_STATS = (
    "SELECT date_trunc($1, captured_at, 'UTC') AS bucket, line_id, program_id, "
    "count(*) AS total, "
    "count(*) FILTER (WHERE verdict = 'pass') AS pass, "
    "count(*) FILTER (WHERE verdict = 'fail') AS fail, "
    "count(*) FILTER (WHERE verdict = 'error') AS error "
    "FROM results WHERE {where} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)


def as_dict(row: asyncpg.Record) -> dict[str, Any]:
    found = dict(row)
    extra = found.pop("extra") or {}
    return {**extra, **found}


async def page(
    pool: asyncpg.Pool,
    *,
    line_id: str | None,
    program_id: uuid.UUID | None,
    verdict: str | None,
    since: datetime | None,
    until: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first; `after` is the (captured_at, result_id) the page continues below."""
    where: list[str] = []
    args: list[Any] = []

    def add(condition: str, value: Any) -> None:
        args.append(value)
        where.append(condition.replace("?", f"${len(args)}"))

    if line_id is not None:
        add("line_id = ?", line_id)
    if program_id is not None:
        add("program_id = ?", program_id)
    if verdict is not None:
        add("verdict = ?", verdict)
    if since is not None:
        add("captured_at >= ?", since)
    if until is not None:
        add("captured_at < ?", until)
    if after is not None:
        args += list(after)
        where.append(f"(captured_at, result_id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    sql = SELECT + (" WHERE " + " AND ".join(where) if where else "")
    sql += f" ORDER BY captured_at DESC, result_id DESC LIMIT ${len(args)}"
    found: list[asyncpg.Record] = await pool.fetch(sql, *args)
    return found


async def get(pool: asyncpg.Pool, result_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(SELECT + " WHERE result_id = $1", result_id)
    return row


async def stats(
    pool: asyncpg.Pool,
    *,
    bucket: str,
    since: datetime,
    until: datetime,
    line_id: str | None,
    program_id: uuid.UUID | None,
) -> list[asyncpg.Record]:
    args: list[Any] = [bucket, since, until]
    where = ["captured_at >= $2", "captured_at < $3"]
    if line_id is not None:
        args.append(line_id)
        where.append(f"line_id = ${len(args)}")
    if program_id is not None:
        args.append(program_id)
        where.append(f"program_id = ${len(args)}")
    # Only placeholders are put into the text; every value is a parameter.
    sql = _STATS.format(where=" AND ".join(where))
    found: list[asyncpg.Record] = await pool.fetch(sql, *args)
    return found
