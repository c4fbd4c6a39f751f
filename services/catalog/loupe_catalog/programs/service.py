"""Programs: every save is a new immutable revision, written with its audit row and its
outbox event in one transaction."""

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import ValidationError
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from loupe_catalog import pagination
from loupe_catalog.audit import service as audit
from loupe_catalog.image_records import repository as image_repository
from loupe_catalog.images_client import ImagesClient, is_stored
from loupe_catalog.outbox import repository as outbox
from loupe_catalog.programs import config as config_schema
from loupe_catalog.programs import repository
from loupe_catalog.programs.diff import config_changes
from loupe_catalog.programs.schemas import ProgramCreate, ProgramWrite
from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import ProgramArchived, ProgramRevised
from loupe_shared.kit.audit import Actor
from loupe_shared.kit.problems import Problem

MAX_CONFIG_BYTES = 256 * 1024
_TOOL_TYPES = {"presence", "difference", "brightness"}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def data_checksum(config: dict[str, Any], master_image_sha256: str | None) -> str:
    """SHA-256 of the canonical config plus the master image hash."""
    digest = hashlib.sha256(canonical_json(config).encode())
    digest.update(b"\n")
    digest.update((master_image_sha256 or "").encode())
    return digest.hexdigest()


def etag(program_id: uuid.UUID, version: int) -> str:
    return f'"{program_id.hex}.{version}"'


def _config_problem(errors: list[dict[str, str]]) -> Problem:
    first = errors[0]
    return Problem(
        422, f"{first['field']}: {first['message']}", title="Invalid program config", errors=errors
    )


def validate_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Upgrade an older config shape, validate it, and answer the normalised current shape."""
    try:
        upgraded, _ = config_schema.upgrade(raw)
    except config_schema.ConfigUpgradeError as exc:
        path, _, message = str(exc).partition(": ")
        raise _config_problem(
            [{"field": f"body:config.{path}", "message": message or str(exc)}]
        ) from None
    try:
        model = config_schema.ProgramConfig.model_validate(upgraded)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            loc = [
                str(part)
                for i, part in enumerate(error["loc"])
                if not (part in _TOOL_TYPES and i > 0 and isinstance(error["loc"][i - 1], int))
            ]
            errors.append({"field": "body:config." + ".".join(loc), "message": error["msg"]})
        raise _config_problem(errors) from None
    normalised = model.model_dump(mode="json")
    if len(canonical_json(normalised).encode()) > MAX_CONFIG_BYTES:
        raise _config_problem(
            [{"field": "body:config", "message": f"larger than {MAX_CONFIG_BYTES // 1024} KiB"}]
        )
    return normalised


def check_if_match(header: str | None, current: str) -> None:
    if header is None:
        raise Problem(
            428,
            "Send If-Match with the ETag you last read, so a concurrent change is not overwritten.",
        )
    candidates = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    if "*" not in candidates and current not in candidates:
        raise Problem(
            412,
            "The program was changed since you read it; reload it and apply your change again.",
            headers={"ETag": current},
            current_etag=current,
        )


async def _ensure_image(
    session: AsyncSession, sha256: str | None, actor: Actor, images: ImagesClient
) -> None:
    if sha256 is None:
        return
    # Held until the save commits, so the image cannot be claimed for deletion meanwhile.
    if not await image_repository.lock_for_reference(session, sha256):
        raise Problem(
            409,
            "The master image is being deleted; upload it again, then save.",
            title="Master image being deleted",
            errors=[{"field": "body:master_image_sha256", "message": "being deleted"}],
        )
    if not await is_stored(
        session, images, sha256, authorization=actor.authorization, request_id=actor.request_id
    ):
        raise Problem(
            422,
            "body:master_image_sha256: no image with this SHA-256 is stored; upload it first",
            title="Unknown master image",
            errors=[
                {
                    "field": "body:master_image_sha256",
                    "message": "no image with this SHA-256 is stored",
                }
            ],
        )


def _name_clash(name: str) -> Problem:
    return Problem(
        409, f"An active program is already named {name!r}.", title="Name taken", field="body:name"
    )


async def create(
    session: AsyncSession, data: ProgramCreate, actor: Actor, images: ImagesClient
) -> RowMapping:
    normalised = validate_config(data.config)
    await _ensure_image(session, data.master_image_sha256, actor, images)
    if await repository.active_name_taken(session, data.name):
        raise _name_clash(data.name)
    if data.legacy_id and await repository.get_by_legacy_id(session, data.legacy_id):
        raise Problem(409, f"A program with legacy id {data.legacy_id!r} exists already.")
    program_id = uuid.uuid4()
    checksum = data_checksum(normalised, data.master_image_sha256)
    now = datetime.now(UTC)
    try:
        await repository.insert(
            session,
            {
                "id": program_id,
                "name": data.name,
                "description": data.description,
                "tags": data.tags,
                "current_revision": 1,
                "master_image_sha256": data.master_image_sha256,
                "data_checksum": checksum,
                "created_at": now,
                "updated_at": now,
                "migration_status": "migrated" if data.legacy_id else "native",
                "legacy_id": data.legacy_id,
            },
        )
        await _write_revision(session, program_id, 1, data, normalised, checksum, actor, now)
    except IntegrityError:
        raise _name_clash(data.name) from None
    await audit.record(
        session,
        actor.principal,
        action="programs.create",
        target=f"program:{program_id}",
        request_id=actor.request_id,
        after=checksum,
        details={"revision": 1, "name": data.name},
    )
    await _publish_revised(session, program_id, 1, checksum, data.master_image_sha256, actor)
    return await _reload(session, program_id)


async def update(
    session: AsyncSession,
    program_id: uuid.UUID,
    data: ProgramWrite,
    if_match: str | None,
    actor: Actor,
    images: ImagesClient,
) -> RowMapping:
    row = await _locked(session, program_id)
    check_if_match(if_match, etag(program_id, row["version"]))
    if row["archived_at"] is not None:
        raise Problem(409, "The program is archived; unarchive it before changing it.")
    normalised = validate_config(data.config)
    checksum = data_checksum(normalised, data.master_image_sha256)
    unchanged = (
        checksum == row["data_checksum"]
        and data.name == row["name"]
        and data.description == row["description"]
        and data.tags == list(row["tags"])
    )
    if unchanged:
        return row  # saving what is there already makes no new revision
    await _ensure_image(session, data.master_image_sha256, actor, images)
    if data.name.lower() != row["name"].lower() and await repository.active_name_taken(
        session, data.name, other_than=program_id
    ):
        raise _name_clash(data.name)
    revision = row["current_revision"] + 1
    now = datetime.now(UTC)
    try:
        await _write_revision(session, program_id, revision, data, normalised, checksum, actor, now)
        await repository.update(
            session,
            program_id,
            {
                "name": data.name,
                "description": data.description,
                "tags": data.tags,
                "current_revision": revision,
                "master_image_sha256": data.master_image_sha256,
                "data_checksum": checksum,
                "updated_at": now,
            },
        )
    except IntegrityError:
        raise _name_clash(data.name) from None
    await audit.record(
        session,
        actor.principal,
        action="programs.update",
        target=f"program:{program_id}",
        request_id=actor.request_id,
        before=row["data_checksum"],
        after=checksum,
        details={"revision": revision},
    )
    await _publish_revised(session, program_id, revision, checksum, data.master_image_sha256, actor)
    return await _reload(session, program_id)


async def set_archived(
    session: AsyncSession, program_id: uuid.UUID, archived: bool, if_match: str | None, actor: Actor
) -> RowMapping:
    row = await _locked(session, program_id)
    check_if_match(if_match, etag(program_id, row["version"]))
    if (row["archived_at"] is not None) == archived:
        return row
    if not archived and await repository.active_name_taken(
        session, row["name"], other_than=program_id
    ):
        raise Problem(
            409,
            f"Another active program is named {row['name']!r}; rename or archive it first.",
            title="Name taken",
        )
    now = datetime.now(UTC)
    await repository.update(
        session, program_id, {"archived_at": now if archived else None, "updated_at": now}
    )
    action = "programs.archive" if archived else "programs.unarchive"
    await audit.record(
        session,
        actor.principal,
        action=action,
        target=f"program:{program_id}",
        request_id=actor.request_id,
        before=row["data_checksum"],
        after=row["data_checksum"],
    )
    event = ProgramArchived(
        program_id=str(program_id), archived=archived, request_id=actor.request_id
    )
    topic = subjects.PROGRAMS_ARCHIVED if archived else subjects.PROGRAMS_UNARCHIVED
    await outbox.enqueue(session, topic, event)
    return await _reload(session, program_id)


async def get(session: AsyncSession, program_id: uuid.UUID) -> RowMapping:
    row = await repository.get(session, program_id)
    if row is None:
        raise Problem(404, f"No program {program_id}.")
    return row


async def fetch(pool: asyncpg.Pool, program_id: uuid.UUID) -> asyncpg.Record:
    """`get` on the hot read path."""
    row = await repository.fetch(pool, program_id)
    if row is None:
        raise Problem(404, f"No program {program_id}.")
    return row


async def list_page(
    pool: asyncpg.Pool,
    *,
    sort: str,
    cursor: str | None,
    limit: int,
    search: str | None,
    tag: str | None,
    archived: str,
) -> tuple[list[asyncpg.Record], str | None]:
    after = None
    if cursor:
        raw_key, last_id = pagination.decode(cursor, sort)
        try:
            after = (repository.parse_sort_key(sort, raw_key), str(uuid.UUID(last_id)))
        except ValueError:
            raise pagination.invalid_cursor() from None
    rows = await repository.fetch_page(
        pool, sort=sort, after=after, limit=limit + 1, search=search, tag=tag, archived=archived
    )

    def cursor_of(last: asyncpg.Record) -> str:
        key = last["sort_key"]
        return pagination.encode(
            sort, key.isoformat() if isinstance(key, datetime) else key, str(last["id"])
        )

    return pagination.page(rows, limit, cursor_of)


async def revision(session: AsyncSession, program_id: uuid.UUID, number: int) -> RowMapping:
    await get(session, program_id)
    row = await repository.get_revision(session, program_id, number)
    if row is None:
        raise Problem(404, f"Program {program_id} has no revision {number}.")
    return row


async def revisions(
    session: AsyncSession, program_id: uuid.UUID, cursor: str | None, limit: int
) -> tuple[list[RowMapping], str | None]:
    await get(session, program_id)
    before = pagination.decode_position(cursor, "revision")
    rows = await repository.list_revisions(session, program_id, before=before, limit=limit + 1)
    return pagination.page(
        rows, limit, lambda last: pagination.encode("revision", last["revision"], "")
    )


async def diff(
    session: AsyncSession, program_id: uuid.UUID, first: int, second: int
) -> dict[str, Any]:
    old = await revision(session, program_id, first)
    new = await revision(session, program_id, second)
    fields = {
        name: {"before": old[name], "after": new[name]}
        for name in ("name", "description", "tags")
        if old[name] != new[name]
    }
    master = None
    if old["master_image_sha256"] != new["master_image_sha256"]:
        master = {"before": old["master_image_sha256"], "after": new["master_image_sha256"]}
    return {
        "program_id": program_id,
        "from_revision": first,
        "to_revision": second,
        "fields": fields,
        "config": config_changes(old["config"], new["config"]),
        "master_image": master,
    }


async def _locked(session: AsyncSession, program_id: uuid.UUID) -> RowMapping:
    if not await repository.lock(session, program_id):
        raise Problem(404, f"No program {program_id}.")
    return await _reload(session, program_id)


async def _reload(session: AsyncSession, program_id: uuid.UUID) -> RowMapping:
    row = await repository.get(session, program_id)
    assert row is not None
    return row


async def _write_revision(
    session: AsyncSession,
    program_id: uuid.UUID,
    number: int,
    data: ProgramWrite,
    normalised: dict[str, Any],
    checksum: str,
    actor: Actor,
    now: datetime,
) -> None:
    await repository.insert_revision(
        session,
        {
            "program_id": program_id,
            "revision": number,
            "name": data.name,
            "description": data.description,
            "tags": data.tags,
            "config": normalised,
            "schema_version": config_schema.CURRENT_VERSION,
            "master_image_sha256": data.master_image_sha256,
            "data_checksum": checksum,
            "created_at": now,
            "created_by": actor.principal.name,
            "message": data.message,
        },
    )


async def _publish_revised(
    session: AsyncSession,
    program_id: uuid.UUID,
    number: int,
    checksum: str,
    master: str | None,
    actor: Actor,
) -> None:
    event = ProgramRevised(
        program_id=str(program_id),
        revision=number,
        data_checksum=checksum,
        master_image_sha256=master,
        request_id=actor.request_id,
    )
    await outbox.enqueue(session, subjects.PROGRAMS_REVISED, event)
