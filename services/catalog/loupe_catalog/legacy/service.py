"""The legacy migration: from the browser's `vision_programs` into programs, once.

A run reads the export, decides per program (import, new revision, already migrated,
duplicate, invalid), and — unless it is a dry run — sends the master images the images
service lacks, creates the programs (or their new revisions) with their legacy ids, reads
each back to verify it, and records the run with every item's outcome. The database writes
of a run are one transaction, committed at the request boundary; each program is written
under its own savepoint, so one that fails is reported and the others stay.
"""

import uuid

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from loupe_catalog import pagination
from loupe_catalog.legacy import repository
from loupe_catalog.legacy.apply import apply
from loupe_catalog.legacy.plan import TAG, Planned, dry_run, plan, prepare
from loupe_catalog.legacy.rollback import rollback
from loupe_shared.kit.problems import Problem

__all__ = [
    "TAG",
    "Planned",
    "apply",
    "dry_run",
    "get_run",
    "list_runs",
    "plan",
    "prepare",
    "rollback",
]


async def get_run(session: AsyncSession, run_id: uuid.UUID) -> tuple[RowMapping, list[RowMapping]]:
    run = await repository.get_run(session, run_id)
    if run is None:
        raise Problem(404, f"No migration run {run_id}.")
    return run, await repository.run_items(session, run_id)


async def list_runs(
    session: AsyncSession, cursor: str | None, limit: int
) -> tuple[list[RowMapping], str | None]:
    after = None
    if cursor:
        after = pagination.decode_time(cursor, "migration-runs")
    rows = await repository.list_runs(session, after=after, limit=limit + 1)
    return pagination.page(
        rows,
        limit,
        lambda last: pagination.encode(
            "migration-runs", last["started_at"].isoformat(), str(last["id"])
        ),
    )
