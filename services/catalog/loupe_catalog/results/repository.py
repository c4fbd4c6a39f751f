"""Result queries (plain asyncpg: these are the hot reads)."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

SELECT = (
    "SELECT result_id, line_id, station, program_id, program_revision, part_id, verdict, "
    "score, defects, processing_ms, captured_at, capture_sha256, is_simulated, reason, "
    "extra, schema_version, recorded_at FROM results"
)


_STATS = (
    "SELECT date_trunc(${bucket}, captured_at, 'UTC') AS bucket, line_id, program_id, "
    "count(*) AS total, "
    "count(*) FILTER (WHERE verdict = 'pass') AS pass, "
    "count(*) FILTER (WHERE verdict = 'fail') AS fail, "
    "count(*) FILTER (WHERE verdict = 'error') AS error "
    "FROM results r WHERE {where} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
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
    defect_kind: str | None,
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
    if defect_kind is not None:
        # containment: some element of the defects array has this kind
        add("defects @> jsonb_build_array(jsonb_build_object('kind', ?::text))", defect_kind)
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
    where, args = _window(since, until, line_id, program_id)
    # Only placeholders are put into the text; every value is a parameter.
    sql = _STATS.format(where=where, bucket=len(args) + 1)
    found: list[asyncpg.Record] = await pool.fetch(sql, *args, bucket)
    return found


async def stored_after(
    pool: asyncpg.Pool,
    last_id: uuid.UUID,
    *,
    line_id: str | None,
    verdict: str | None,
    window: timedelta,
    limit: int,
) -> list[asyncpg.Record] | None:
    """Results stored after result `last_id` and captured at most `window` before it, in
    capture order: what a live-feed reader that saw `last_id` missed. None when `last_id` is
    not stored (yet)."""
    last = await pool.fetchrow(
        "SELECT captured_at, recorded_at FROM results WHERE result_id = $1", last_id
    )
    if last is None:
        return None
    args: list[Any] = [last["captured_at"] - window, last["recorded_at"], last_id]
    where = ["captured_at >= $1", "recorded_at >= $2", "result_id <> $3"]
    if line_id is not None:
        args.append(line_id)
        where.append(f"line_id = ${len(args)}")
    if verdict is not None:
        args.append(verdict)
        where.append(f"verdict = ${len(args)}")
    args.append(limit)
    sql = f"{SELECT} WHERE {' AND '.join(where)} ORDER BY captured_at, result_id LIMIT ${len(args)}"
    found: list[asyncpg.Record] = await pool.fetch(sql, *args)
    return found


# What a defect is counted by: a value of the defect (`kind`, `tool_id`) or of its result.
DEFECT_KEYS = {
    "kind": "d.x ->> 'kind'",
    "tool": "d.x ->> 'tool_id'",
    "line": "r.line_id",
    "program": "r.program_id::text",
}

_DEFECTS = (
    "WITH found AS ("
    " SELECT {key} AS key, r.result_id FROM results r"
    " CROSS JOIN LATERAL jsonb_array_elements(r.defects) AS d(x)"
    " WHERE {where} AND jsonb_typeof(r.defects) = 'array'"
    "), grouped AS ("
    " SELECT key, count(*) AS defects, count(DISTINCT result_id) AS results"
    " FROM found GROUP BY key"
    ") SELECT key, defects, results, sum(defects) OVER () AS total, count(*) OVER () AS groups"
    " FROM grouped ORDER BY defects DESC, key NULLS LAST LIMIT $"
)

_VERDICTS = (
    "SELECT count(*) AS total, count(*) FILTER (WHERE verdict = 'fail') AS fail "
    "FROM results r WHERE {where}"
)


def _window(
    since: datetime, until: datetime, line_id: str | None, program_id: uuid.UUID | None
) -> tuple[str, list[Any]]:
    args: list[Any] = [since, until]
    where = ["r.captured_at >= $1", "r.captured_at < $2"]
    if line_id is not None:
        args.append(line_id)
        where.append(f"r.line_id = ${len(args)}")
    if program_id is not None:
        args.append(program_id)
        where.append(f"r.program_id = ${len(args)}")
    return " AND ".join(where), args


async def defects(
    pool: asyncpg.Pool,
    *,
    by: str,
    since: datetime,
    until: datetime,
    line_id: str | None,
    program_id: uuid.UUID | None,
    limit: int,
) -> tuple[list[asyncpg.Record], asyncpg.Record]:
    """The `limit` largest groups of the window's defects counted by `by` (one of
    `DEFECT_KEYS`), each with the whole window's defect total and group count; and the
    window's result and failing-result counts. Both scan the window by `captured_at`."""
    where, args = _window(since, until, line_id, program_id)
    # Only a fixed expression and placeholders are put into the text; values are parameters.
    sql = _DEFECTS.format(key=DEFECT_KEYS[by], where=where) + str(len(args) + 1)
    rows: list[asyncpg.Record] = await pool.fetch(sql, *args, limit)
    # An aggregate without GROUP BY answers exactly one row.
    counts: list[asyncpg.Record] = await pool.fetch(_VERDICTS.format(where=where), *args)
    return rows, counts[0]
