"""All SQL of the legacy migration: runs, their items, and which program each legacy id
became."""

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Text

SOURCE = "legacy-localstorage"
_RUN_COLUMNS = (
    "id, source, started_at, finished_at, started_by, request_id, input_sha256, input_shape, "
    "totals, rolled_back_at, rolled_back_by, rollback"
)
_ITEM_COLUMNS = (
    "position, legacy_id, name, outcome, reason_code, reason, warnings, program_id, revision, "
    "previous_revision, master_image_sha256, data_checksum, source_checksum, "
    "previous_source_checksum"
)


async def serialize_runs(session: AsyncSession) -> None:
    """One applied run at a time (until this transaction ends): a second run of the same
    export then sees the first one's programs and finds them migrated already."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('loupe.legacy-migration'))"))


async def programs_by_legacy_id(
    session: AsyncSession, legacy_ids: list[str]
) -> dict[str, RowMapping]:
    """The programs these legacy ids became, with the legacy entry's checksum when it was
    last migrated (None for a program created with a legacy id by hand)."""
    if not legacy_ids:
        return {}
    statement = text(
        "SELECT p.legacy_id, p.id, p.name, p.description, p.tags, p.archived_at, "
        "p.current_revision, p.data_checksum, lp.source_checksum "
        "FROM programs p LEFT JOIN legacy_programs lp ON lp.program_id = p.id "
        "WHERE p.legacy_id = ANY(:ids)"
    ).bindparams(bindparam("ids", type_=ARRAY(Text)))
    rows = await session.execute(statement, {"ids": legacy_ids})
    return {row["legacy_id"]: row for row in rows.mappings()}


async def active_names(session: AsyncSession, names: list[str]) -> dict[str, uuid.UUID]:
    """Active programs holding any of these names (case-insensitively), by lower-case name."""
    if not names:
        return {}
    statement = text(
        "SELECT lower(name) AS name, id FROM programs "
        "WHERE archived_at IS NULL AND lower(name) = ANY(:names)"
    ).bindparams(bindparam("names", type_=ARRAY(Text)))
    rows = await session.execute(statement, {"names": [n.lower() for n in names]})
    return {row["name"]: row["id"] for row in rows.mappings()}


async def insert_run(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(
        text(
            "INSERT INTO migration_runs (id, source, started_at, started_by, actor_token_id, "
            "request_id, input_sha256, input_shape) VALUES (:id, :source, :started_at, "
            ":started_by, :actor_token_id, :request_id, :input_sha256, :input_shape)"
        ),
        {"source": SOURCE, **values},
    )


async def finish_run(session: AsyncSession, run_id: uuid.UUID, totals: dict[str, int]) -> None:
    await session.execute(
        text(
            # clock_timestamp(): now() would be the transaction's start.
            "UPDATE migration_runs SET totals = CAST(:totals AS jsonb), "
            "finished_at = clock_timestamp() "
            "WHERE id = :id"
        ),
        {"id": run_id, "totals": json.dumps(totals)},
    )


async def insert_items(
    session: AsyncSession, run_id: uuid.UUID, items: list[dict[str, Any]]
) -> None:
    if not items:
        return
    await session.execute(
        text(
            f"INSERT INTO migration_items (run_id, {_ITEM_COLUMNS}) VALUES (:run_id, "  # noqa: S608
            ":position, :legacy_id, :name, :outcome, :reason_code, :reason, "
            "CAST(:warnings AS jsonb), :program_id, :revision, :previous_revision, "
            ":master_image_sha256, :data_checksum, :source_checksum, :previous_source_checksum)"
        ),
        [{**item, "run_id": run_id, "warnings": json.dumps(item["warnings"])} for item in items],
    )


async def upsert_mapping(
    session: AsyncSession,
    legacy_id: str,
    program_id: uuid.UUID,
    source_checksum: str,
    run_id: uuid.UUID,
) -> None:
    await session.execute(
        text(
            "INSERT INTO legacy_programs (legacy_id, program_id, source_checksum, run_id) "
            "VALUES (:legacy_id, :program_id, :checksum, :run_id) ON CONFLICT (legacy_id) "
            "DO UPDATE SET program_id = excluded.program_id, "
            "source_checksum = excluded.source_checksum, run_id = excluded.run_id, "
            "migrated_at = now()"
        ),
        {
            "legacy_id": legacy_id,
            "program_id": program_id,
            "checksum": source_checksum,
            "run_id": run_id,
        },
    )


async def set_source_checksum(session: AsyncSession, program_id: uuid.UUID, checksum: str) -> None:
    await session.execute(
        text("UPDATE legacy_programs SET source_checksum = :checksum WHERE program_id = :id"),
        {"id": program_id, "checksum": checksum},
    )


async def release_legacy_id(session: AsyncSession, program_id: uuid.UUID) -> None:
    """A rolled-back program lets go of its legacy id, so a later run imports it afresh."""
    await session.execute(
        text("DELETE FROM legacy_programs WHERE program_id = :id"), {"id": program_id}
    )
    await session.execute(
        text(
            "UPDATE programs SET legacy_id = NULL, migration_status = 'rolled_back' WHERE id = :id"
        ),
        {"id": program_id},
    )


async def get_run(
    session: AsyncSession, run_id: uuid.UUID, *, for_update: bool = False
) -> RowMapping | None:
    lock = " FOR UPDATE" if for_update else ""
    found = await session.execute(
        text(f"SELECT {_RUN_COLUMNS} FROM migration_runs WHERE id = :id{lock}"),  # noqa: S608
        {"id": run_id},
    )
    return found.mappings().first()


async def run_items(session: AsyncSession, run_id: uuid.UUID) -> list[RowMapping]:
    found = await session.execute(
        text(
            f"SELECT {_ITEM_COLUMNS} FROM migration_items WHERE run_id = :id "  # noqa: S608
            "ORDER BY position"
        ),
        {"id": run_id},
    )
    return list(found.mappings())


async def list_runs(
    session: AsyncSession, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[RowMapping]:
    condition = "WHERE (started_at, id) < (:at, :id) " if after else ""
    found = await session.execute(
        text(
            f"SELECT {_RUN_COLUMNS} FROM migration_runs {condition}"  # noqa: S608
            "ORDER BY started_at DESC, id DESC LIMIT :limit"
        ),
        {"limit": limit, **({"at": after[0], "id": after[1]} if after else {})},
    )
    return list(found.mappings())


async def program_state(session: AsyncSession, program_id: uuid.UUID) -> RowMapping | None:
    found = await session.execute(
        text("SELECT id, current_revision, archived_at, legacy_id FROM programs WHERE id = :id"),
        {"id": program_id},
    )
    return found.mappings().first()


async def mark_rolled_back(
    session: AsyncSession, run_id: uuid.UUID, by: str, report: dict[str, Any]
) -> datetime:
    found = await session.execute(
        text(
            "UPDATE migration_runs SET rolled_back_at = now(), rolled_back_by = :by, "
            "rollback = CAST(:report AS jsonb) WHERE id = :id RETURNING rolled_back_at"
        ),
        {"id": run_id, "by": by, "report": json.dumps(report, default=str)},
    )
    at: datetime = found.scalar_one()
    return at
