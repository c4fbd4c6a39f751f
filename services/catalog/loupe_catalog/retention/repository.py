"""Retention: policies per installation, line or program; a run expires results and releases
captured images.

Where several policies apply to a result (the installation's, its line's, its program's),
the longest age wins: data goes only when every policy that speaks about it agrees. A policy
without an age for results (or captures) says nothing about them. Releasing a capture only
removes the result's reference to the image; the images service's collector deletes the
blob after its grace period, and never while a program revision (a master image) or a
remaining result references it.
"""

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

CHUNK = 5000

# The age (days) that applies to a result row `r`, from the policies' column `{col}`.
_AGE = (
    "(SELECT max(p.{col}) FROM retention_policies p WHERE p.{col} IS NOT NULL AND "
    "(p.scope = 'all' OR (p.scope = 'line' AND p.target = r.line_id) OR "
    "(p.scope = 'program' AND p.target = r.program_id::text)))"
)
_EXPIRED = "r.captured_at < now() - make_interval(days => " + _AGE + ")"
_SHORTEST = "SELECT min({col}) FROM retention_policies WHERE {col} IS NOT NULL"
# Templates: only the fragments above are put in; every value is a bound parameter.
_PREVIEW = (
    "SELECT r.line_id, r.program_id, count(*) AS count, "
    "count(DISTINCT r.capture_sha256) AS images FROM results r "
    "WHERE r.captured_at < now() - make_interval(days => :shortest) {extra}AND {expired} "
    "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 1000"
)
_EXPIRE = (
    "DELETE FROM results WHERE (result_id, captured_at) IN ("
    "SELECT r.result_id, r.captured_at FROM results r "
    "WHERE r.captured_at < now() - make_interval(days => :shortest) AND {expired} "
    "LIMIT :chunk)"
)
_RELEASE = (
    "WITH target AS (SELECT r.result_id, r.captured_at, r.capture_sha256 FROM results r "
    "WHERE r.capture_sha256 IS NOT NULL AND "
    "r.captured_at < now() - make_interval(days => :shortest) AND {expired} LIMIT :chunk), "
    "changed AS (UPDATE results SET capture_sha256 = NULL, capture_released_at = now() "
    "FROM target WHERE results.result_id = target.result_id "
    "AND results.captured_at = target.captured_at RETURNING 1) "
    "SELECT (SELECT count(*) FROM changed), (SELECT count(DISTINCT capture_sha256) FROM target)"
)


async def policies(session: AsyncSession) -> list[RowMapping]:
    found = await session.execute(
        text(
            "SELECT scope, target, results_max_age_days, captures_max_age_days, updated_at, "
            "updated_by FROM retention_policies ORDER BY scope, target"
        )
    )
    return list(found.mappings())


async def put_policy(session: AsyncSession, values: dict[str, Any]) -> RowMapping:
    found = await session.execute(
        text(
            "INSERT INTO retention_policies (scope, target, results_max_age_days, "
            "captures_max_age_days, updated_by) VALUES (:scope, :target, :results, :captures, "
            ":by) ON CONFLICT (scope, target) DO UPDATE SET "
            "results_max_age_days = excluded.results_max_age_days, "
            "captures_max_age_days = excluded.captures_max_age_days, updated_at = now(), "
            "updated_by = excluded.updated_by "
            "RETURNING scope, target, results_max_age_days, captures_max_age_days, updated_at, "
            "updated_by"
        ),
        values,
    )
    return found.mappings().one()


async def delete_policy(session: AsyncSession, scope: str, target: str) -> bool:
    found = await session.execute(
        text("DELETE FROM retention_policies WHERE scope = :scope AND target = :target"),
        {"scope": scope, "target": target},
    )
    return bool(getattr(found, "rowcount", 0))


async def _shortest(session: AsyncSession, col: str) -> int | None:
    value = (await session.execute(text(_SHORTEST.format(col=col)))).scalar()
    return None if value is None else int(value)


async def preview(session: AsyncSession) -> dict[str, Any]:
    """What a run would do now: results to expire and captures to release, per line and
    program."""
    report: dict[str, Any] = {"results": [], "captures": []}
    for kind, col, extra in (
        ("results", "results_max_age_days", ""),
        # Not counting results that go anyway.
        (
            "captures",
            "captures_max_age_days",
            "AND r.capture_sha256 IS NOT NULL AND NOT coalesce("
            + _EXPIRED.format(col="results_max_age_days")
            + ", false) ",
        ),
    ):
        shortest = await _shortest(session, col)
        if shortest is None:
            continue
        rows = await session.execute(
            text(_PREVIEW.format(extra=extra, expired=_EXPIRED.format(col=col))),
            {"shortest": shortest},
        )
        report[kind] = [dict(row) for row in rows.mappings()]
    return report


async def expire_results(session: AsyncSession) -> int:
    """Delete one chunk of expired results; answers how many went (0: done)."""
    shortest = await _shortest(session, "results_max_age_days")
    if shortest is None:
        return 0
    found = await session.execute(
        text(_EXPIRE.format(expired=_EXPIRED.format(col="results_max_age_days"))),
        {"shortest": shortest, "chunk": CHUNK},
    )
    return int(getattr(found, "rowcount", 0))


async def release_captures(session: AsyncSession) -> tuple[int, int]:
    """Drop one chunk of expired results' references to their captured images; answers the
    results changed and the distinct images released (0, 0: done)."""
    shortest = await _shortest(session, "captures_max_age_days")
    if shortest is None:
        return 0, 0
    found = await session.execute(
        text(_RELEASE.format(expired=_EXPIRED.format(col="captures_max_age_days"))),
        {"shortest": shortest, "chunk": CHUNK},
    )
    changed, images = found.one()
    return int(changed), int(images)


async def record_run(
    session: AsyncSession, run_id: Any, dry_run: bool, by: str, report: dict[str, Any]
) -> None:
    await session.execute(
        text(
            "INSERT INTO retention_runs (id, dry_run, started_by, report, finished_at) "
            "VALUES (:id, :dry, :by, CAST(:report AS jsonb), now())"
        ),
        {"id": run_id, "dry": dry_run, "by": by, "report": _json(report)},
    )


async def last_applied(session: AsyncSession) -> datetime | None:
    """When the newest run that changed something (not a dry run) finished."""
    found = await session.execute(
        text("SELECT max(finished_at) FROM retention_runs WHERE NOT dry_run")
    )
    at: datetime | None = found.scalar_one()
    return at


async def runs(session: AsyncSession, limit: int) -> list[RowMapping]:
    found = await session.execute(
        text(
            "SELECT id, started_at, finished_at, dry_run, started_by, report FROM retention_runs "
            "ORDER BY started_at DESC LIMIT :limit"
        ),
        {"limit": limit},
    )
    return list(found.mappings())


def _json(value: Any) -> str:
    return json.dumps(value, default=str)
