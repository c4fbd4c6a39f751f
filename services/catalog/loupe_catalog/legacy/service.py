"""The legacy migration: from the browser's `vision_programs` into programs, once.

A run reads the export, decides per program (import, new revision, already migrated,
duplicate, invalid), and — unless it is a dry run — sends the master images the images
service lacks, creates the programs (or their new revisions) with their legacy ids, reads
each back to verify it, and records the run with every item's outcome. The database writes
of a run are one transaction, committed at the request boundary; each program is written
under its own savepoint, so one that fails is reported and the others stay.
"""

import asyncio
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loupe_catalog import pagination
from loupe_catalog.audit import service as audit
from loupe_catalog.images_client import ImagesClient
from loupe_catalog.legacy import images as legacy_images
from loupe_catalog.legacy import parsing, repository
from loupe_catalog.legacy.schemas import OUTCOMES, ItemReport, Report, RollbackItem
from loupe_catalog.legacy.upgrade import ConfigError, upgrade_config
from loupe_catalog.legacy.uploads import Sent, Uploader
from loupe_catalog.programs import service as programs
from loupe_catalog.programs.schemas import ProgramCreate, ProgramWrite
from loupe_catalog.settings import CatalogSettings
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.problems import Problem

_log = get_logger("catalog.legacy")
TAG = "migrated"


@dataclass
class Planned:
    entry: parsing.LegacyEntry
    item: ItemReport
    image: legacy_images.MasterImage | None = None
    config: dict[str, Any] = field(default_factory=dict)
    existing: RowMapping | None = None
    previous_revision: int | None = None
    # Passed every check that needs no database (see `prepare`).
    ready: bool = False

    def reset(self) -> None:
        """Forget what the catalog was found to hold, to decide again."""
        self.item.outcome = "imported"
        self.item.reason_code = self.item.reason = None
        self.item.program_id = self.item.revision = None
        self.existing = None

    def invalid(self, code: str, reason: str) -> None:
        self.item.outcome = "invalid"
        self.item.reason_code = code
        self.item.reason = reason

    def failed(self, code: str, reason: str) -> None:
        self.item.outcome = "failed"
        self.item.reason_code = code
        self.item.reason = reason


def prepare(entries: list[parsing.LegacyEntry], max_image_bytes: int) -> list[Planned]:
    """Everything that needs no database: shape, duplicates, images, configs. CPU-bound
    (base64 and SHA-256 of every image): run it in a worker thread."""
    planned: list[Planned] = []
    seen: dict[str, int] = {}
    for entry in entries:
        item = ItemReport(
            position=entry.position,
            legacy_id=entry.legacy_id,
            name=entry.name,
            outcome="imported",
            warnings=list(entry.warnings),
        )
        plan = Planned(entry, item)
        planned.append(plan)
        if entry.problem is not None:
            plan.invalid("bad_entry", entry.problem)
            continue
        assert entry.legacy_id is not None
        if entry.legacy_id in seen:
            item.outcome = "duplicate"
            item.reason_code = "duplicate_legacy_id"
            item.reason = f"the same id as the program at position {seen[entry.legacy_id]}"
            continue
        seen[entry.legacy_id] = entry.position
        if entry.image is not None:
            try:
                plan.image = legacy_images.decode(entry.image, max_image_bytes)
            except legacy_images.ImageError as exc:
                plan.invalid(exc.code, exc.message)
                continue
            item.master_image_sha256 = plan.image.sha256
            item.image_bytes = len(plan.image.data)
            item.warnings += plan.image.warnings
        try:
            upgraded = upgrade_config(entry.config)
        except ConfigError as exc:
            plan.invalid("config_not_upgradable", f"the config cannot be upgraded: {exc}")
            continue
        plan.config = upgraded.config
        item.config_from_version = upgraded.from_version
        item.data_checksum = programs.data_checksum(plan.config, item.master_image_sha256)
        plan.ready = True
    return planned


async def _decide(session: AsyncSession, planned: list[Planned]) -> None:
    """Against what the catalog holds: new program, new revision, already migrated, or a
    name another active program holds."""
    valid = [p for p in planned if p.ready]
    existing = await repository.programs_by_legacy_id(
        session, [p.entry.legacy_id for p in valid if p.entry.legacy_id]
    )
    taken = await repository.active_names(session, [(p.entry.name or "").strip() for p in valid])
    claimed: dict[str, int] = {}
    for plan in valid:
        entry, item = plan.entry, plan.item
        assert entry.legacy_id is not None
        assert entry.name is not None
        name = entry.name.strip()
        found = existing.get(entry.legacy_id)
        owner: uuid.UUID | None = None
        if found is not None:
            plan.existing = found
            item.program_id = found["id"]
            item.revision = found["current_revision"]
            owner = found["id"]
            same_source = found["source_checksum"] == entry.source_checksum
            same_content = (
                found["source_checksum"] is None
                and found["data_checksum"] == item.data_checksum
                and found["name"] == name
            )
            if same_source or same_content:
                item.outcome = "already_migrated"
                continue
            if found["archived_at"] is not None:
                plan.invalid(
                    "archived_in_loupe",
                    "changed since it was migrated, but its program is archived in Loupe: "
                    "unarchive it to migrate the change",
                )
                continue
            item.outcome = "revised"
        key = name.lower()
        holder = taken.get(key)
        if (holder is not None and holder != owner) or key in claimed:
            where = (
                f"the program at position {claimed[key]} of this export"
                if key in claimed
                else "an active program"
            )
            plan.invalid("name_clash", f"{where} is already named {name!r}; rename one of them")
            continue
        claimed[key] = entry.position


def _totals(planned: list[Planned]) -> dict[str, int]:
    totals: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
    for plan in planned:
        totals[plan.item.outcome] += 1
    return {"programs": len(planned), **totals}


async def _read(body: bytes, settings: CatalogSettings) -> tuple[parsing.LegacyInput, str]:
    if not body.strip():
        raise Problem(422, "The body is empty: send the exported JSON.", title="Empty export")
    digest = hashlib.sha256(body).hexdigest()
    try:
        parsed = await asyncio.to_thread(parsing.parse, body)
    except parsing.InputError as exc:
        status = 400 if exc.code == "not_json" else 422
        raise Problem(
            status, f"The export cannot be read: {exc}", title="Unreadable legacy export"
        ) from None
    if len(parsed.entries) > settings.legacy_max_programs:
        raise Problem(
            422,
            f"The export holds {len(parsed.entries)} programs; at most "
            f"{settings.legacy_max_programs} are migrated in one run. Split the array and "
            "run each part (a run is safe to repeat).",
            title="Too many programs",
        )
    return parsed, digest


async def plan(
    session: AsyncSession, body: bytes, settings: CatalogSettings
) -> tuple[parsing.LegacyInput, str, list[Planned]]:
    parsed, digest = await _read(body, settings)
    planned = await asyncio.to_thread(prepare, parsed.entries, settings.legacy_max_image_bytes)
    await _decide(session, planned)
    return parsed, digest, planned


async def dry_run(session: AsyncSession, body: bytes, settings: CatalogSettings) -> Report:
    parsed, digest, planned = await plan(session, body, settings)
    totals = _totals(planned)
    _log.info("migrations.legacy_dry_run", input_sha256=digest, **totals)
    return Report(
        run_id=None,
        dry_run=True,
        input_sha256=digest,
        input_shape=parsed.shape,
        totals=totals,
        items=[p.item for p in planned],
    )


def _writing(planned: list[Planned]) -> dict[str, Planned]:
    """The programs to write that have a master image, by image hash (one each)."""
    by_hash: dict[str, Planned] = {}
    for plan in planned:
        if plan.item.outcome in ("imported", "revised") and plan.image is not None:
            by_hash.setdefault(plan.image.sha256, plan)
    return by_hash


async def _upload(planned: list[Planned], uploader: Uploader, done: dict[str, Sent]) -> None:
    """Send the images the images service lacks (each once; those in `done` are handled
    already), then read back that each is stored. Records the outcome per hash in `done`."""
    todo = {sha: plan for sha, plan in _writing(planned).items() if sha not in done}
    if not todo:
        return
    present = await uploader.present(todo)
    sent = await asyncio.gather(
        *(
            uploader.send(plan.image, f"{plan.entry.legacy_id}.{plan.image.extension}")
            for sha, plan in todo.items()
            if sha not in present and plan.image is not None
        )
    )
    results = {s.sha256: s for s in sent}
    stored = await uploader.present(todo)
    for sha in todo:
        result = results.get(sha, Sent(sha, sent=False))
        if result.refused is None and sha not in stored:
            result = Sent(sha, result.sent, missing=True)
        done[sha] = result


def _mark_images(planned: list[Planned], done: dict[str, Sent]) -> None:
    for plan in planned:
        if plan.item.outcome not in ("imported", "revised") or plan.image is None:
            continue
        result = done[plan.image.sha256]
        plan.item.image_sent = result.sent
        if result.refused is not None:
            plan.failed("upload_refused", f"the images service refused the image: {result.refused}")
        elif result.missing:
            plan.failed("verification_failed", "the image is not stored after its upload")


def _description(entry: parsing.LegacyEntry) -> str:
    changed = f", last changed there {entry.updated_at[:40]}" if entry.updated_at else ""
    return f"Migrated from the browser's localStorage (legacy id {entry.legacy_id}{changed})."


async def _write(
    session: AsyncSession,
    plan: Planned,
    run_id: uuid.UUID,
    actor: programs.Actor,
    images: ImagesClient,
) -> None:
    entry, item = plan.entry, plan.item
    assert entry.legacy_id is not None
    assert entry.name is not None
    message = f"legacy migration run {run_id}"
    if plan.existing is None:
        row = await programs.create(
            session,
            ProgramCreate(
                name=entry.name,
                description=_description(entry),
                tags=[TAG],
                config=plan.config,
                master_image_sha256=item.master_image_sha256,
                message=message,
                legacy_id=entry.legacy_id,
            ),
            actor,
            images,
        )
    else:
        plan.previous_revision = plan.existing["current_revision"]
        row = await programs.update(
            session,
            plan.existing["id"],
            ProgramWrite(
                name=entry.name,
                description=plan.existing["description"],
                tags=list(plan.existing["tags"]),
                config=plan.config,
                master_image_sha256=item.master_image_sha256,
                message=f"{message}: changed in the browser since it was migrated",
            ),
            "*",
            actor,
            images,
        )
        if row["current_revision"] == plan.previous_revision:
            item.outcome = "already_migrated"  # only the legacy timestamps changed
    # `create` and `update` answer the program as read back from the database: verify the
    # checksum over the stored config and image hash.
    recomputed = programs.data_checksum(row["config"], row["master_image_sha256"])
    if recomputed != item.data_checksum or row["data_checksum"] != item.data_checksum:
        raise _Unverified(f"stored checksum {recomputed} differs from {item.data_checksum}")
    item.program_id = row["id"]
    item.revision = row["current_revision"]
    await repository.upsert_mapping(
        session, entry.legacy_id, row["id"], entry.source_checksum, run_id
    )


class _Unverified(Exception):
    pass


async def apply(
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    body: bytes,
    settings: CatalogSettings,
    actor: programs.Actor,
    images: ImagesClient,
) -> Report:
    started_at = datetime.now(UTC)
    parsed, digest = await _read(body, settings)
    planned = await asyncio.to_thread(prepare, parsed.entries, settings.legacy_max_image_bytes)
    # Images are sent before the run's transaction begins (no connection or lock is held
    # while they travel); the decision is taken again under the lock, and an image it now
    # needs that was not sent yet (another run changed things meanwhile) is sent then.
    async with sessions() as reading:
        await _decide(reading, planned)
    done: dict[str, Sent] = {}
    async with Uploader(
        settings.images_url,
        authorization=actor.authorization,
        request_id=actor.request_id,
        concurrency=settings.legacy_upload_concurrency,
    ) as uploader:
        await _upload(planned, uploader, done)
        await repository.serialize_runs(session)
        for plan_ in planned:
            if plan_.ready:
                plan_.reset()
        await _decide(session, planned)
        await _upload(planned, uploader, done)
    _mark_images(planned, done)
    run_id = uuid.uuid4()
    await repository.insert_run(
        session,
        {
            "id": run_id,
            "started_at": started_at,
            "started_by": actor.principal.name,
            "actor_token_id": actor.principal.token_id,
            "request_id": actor.request_id,
            "input_sha256": digest,
            "input_shape": parsed.shape,
        },
    )
    records = []
    for plan_ in planned:
        item = plan_.item
        previous_source = plan_.existing["source_checksum"] if plan_.existing else None
        if item.outcome in ("imported", "revised"):
            try:
                async with session.begin_nested():
                    await _write(session, plan_, run_id, actor, images)
            except Problem as problem:
                plan_.failed("save_refused", problem.detail)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                plan_.failed("save_refused", f"{where}: {first['msg']}")
            except _Unverified as exc:
                plan_.failed("verification_failed", str(exc))
        if item.outcome == "failed":
            _log.warning(
                "migrations.legacy_item_failed",
                run_id=str(run_id),
                legacy_id=item.legacy_id,
                reason_code=item.reason_code,
                reason=item.reason,
            )
        records.append(
            {
                **item.model_dump(
                    include={
                        "position",
                        "legacy_id",
                        "name",
                        "outcome",
                        "reason_code",
                        "reason",
                        "warnings",
                        "program_id",
                        "revision",
                        "master_image_sha256",
                        "data_checksum",
                    }
                ),
                "previous_revision": plan_.previous_revision,
                "source_checksum": plan_.entry.source_checksum,
                "previous_source_checksum": previous_source,
            }
        )
    totals = _totals(planned)
    await repository.insert_items(session, run_id, records)
    await repository.finish_run(session, run_id, totals)
    await audit.record(
        session,
        actor.principal,
        action="migrations.legacy_apply",
        target=f"migration-run:{run_id}",
        request_id=actor.request_id,
        after=digest,
        details=totals,
    )
    _log.info("migrations.legacy_applied", run_id=str(run_id), input_sha256=digest, **totals)
    return Report(
        run_id=run_id,
        dry_run=False,
        input_sha256=digest,
        input_shape=parsed.shape,
        totals=totals,
        items=[p.item for p in planned],
    )


# --- recorded runs ------------------------------------------------------------------------


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
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = pagination.encode(
            "migration-runs", last["started_at"].isoformat(), str(last["id"])
        )
    return rows[:limit], next_cursor


async def rollback(
    session: AsyncSession, run_id: uuid.UUID, actor: programs.Actor, images: ImagesClient
) -> tuple[datetime, list[RollbackItem]]:
    """Undo a run: programs it created are archived and let go of their legacy ids;
    programs it revised get a new revision with their content from before, when nothing
    changed them since. Its images are left to the images service's collector."""
    run = await repository.get_run(session, run_id, for_update=True)
    if run is None:
        raise Problem(404, f"No migration run {run_id}.")
    if run["rolled_back_at"] is not None:
        raise Problem(
            409,
            f"Migration run {run_id} was rolled back already ({run['rolled_back_at']}).",
            title="Rolled back already",
        )
    done: list[RollbackItem] = []
    for item in await repository.run_items(session, run_id):
        if item["outcome"] not in ("imported", "revised") or item["program_id"] is None:
            continue
        program_id: uuid.UUID = item["program_id"]
        try:
            async with session.begin_nested():
                done.append(await _undo(session, item, program_id, run_id, actor, images))
        except Problem as problem:
            done.append(
                RollbackItem(
                    legacy_id=item["legacy_id"],
                    program_id=program_id,
                    action="skipped",
                    reason=problem.detail,
                )
            )
    report = [d.model_dump(mode="json") for d in done]
    at = await repository.mark_rolled_back(session, run_id, actor.principal.name, {"items": report})
    await audit.record(
        session,
        actor.principal,
        action="migrations.legacy_rollback",
        target=f"migration-run:{run_id}",
        request_id=actor.request_id,
        details={
            action: sum(1 for d in done if d.action == action)
            for action in ("archived", "reverted", "skipped")
        },
    )
    _log.info("migrations.legacy_rolled_back", run_id=str(run_id), items=len(done))
    return at, done


async def _undo(
    session: AsyncSession,
    item: RowMapping,
    program_id: uuid.UUID,
    run_id: uuid.UUID,
    actor: programs.Actor,
    images: ImagesClient,
) -> RollbackItem:
    state = await repository.program_state(session, program_id)
    legacy_id = item["legacy_id"]
    if state is None:
        return RollbackItem(
            legacy_id=legacy_id, program_id=program_id, action="skipped", reason="no such program"
        )
    if item["outcome"] == "imported":
        await programs.set_archived(session, program_id, True, "*", actor)
        if state["legacy_id"] == legacy_id:
            await repository.release_legacy_id(session, program_id)
        return RollbackItem(legacy_id=legacy_id, program_id=program_id, action="archived")
    if (
        state["current_revision"] != item["revision"]
        or state["archived_at"] is not None
        or item["previous_revision"] is None
    ):
        return RollbackItem(
            legacy_id=legacy_id,
            program_id=program_id,
            action="skipped",
            reason=f"changed since the run (now revision {state['current_revision']}"
            f"{', archived' if state['archived_at'] else ''}); left as it is",
        )
    before = await programs.revision(session, program_id, item["previous_revision"])
    await programs.update(
        session,
        program_id,
        ProgramWrite(
            name=before["name"],
            description=before["description"],
            tags=list(before["tags"]),
            config=before["config"],
            master_image_sha256=before["master_image_sha256"],
            message=f"rollback of legacy migration run {run_id}",
        ),
        "*",
        actor,
        images,
    )
    if item["previous_source_checksum"]:
        await repository.set_source_checksum(session, program_id, item["previous_source_checksum"])
    return RollbackItem(legacy_id=legacy_id, program_id=program_id, action="reverted")
