"""Applying a legacy migration: send the master images the images service lacks, create the
programs (or their new revisions) with their legacy ids, read each back to verify it, and
record the run with every item's outcome. The database writes of a run are one transaction,
committed at the request boundary; each program is written under its own savepoint, so one
that fails is reported and the others stay."""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loupe_catalog.audit import service as audit
from loupe_catalog.images_client import ImagesClient
from loupe_catalog.legacy import parsing, repository
from loupe_catalog.legacy import plan as planning
from loupe_catalog.legacy.plan import TAG, Planned
from loupe_catalog.legacy.schemas import Report
from loupe_catalog.legacy.uploads import Sent, Uploader
from loupe_catalog.programs import service as programs
from loupe_catalog.programs.schemas import ProgramCreate, ProgramWrite
from loupe_catalog.settings import CatalogSettings
from loupe_shared.kit.audit import Actor
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.problems import Problem

_log = get_logger("catalog.legacy")


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
    actor: Actor,
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


def _item_record(plan_: Planned) -> dict[str, Any]:
    """The run item recorded for a program: its outcome as reported, with what a rollback
    needs (the revision and the source checksum from before the run)."""
    item = plan_.item
    return {
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
        "previous_source_checksum": (plan_.existing["source_checksum"] if plan_.existing else None),
    }


class _Unverified(Exception):
    pass


async def apply(
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    body: bytes,
    settings: CatalogSettings,
    actor: Actor,
    images: ImagesClient,
) -> Report:
    started_at = datetime.now(UTC)
    parsed, digest = await planning.read(body, settings)
    planned = await asyncio.to_thread(
        planning.prepare, parsed.entries, settings.legacy_max_image_bytes
    )
    # Images are sent before the run's transaction begins (no connection or lock is held
    # while they travel); the decision is taken again under the lock, and an image it now
    # needs that was not sent yet (another run changed things meanwhile) is sent then.
    async with sessions() as reading:
        await planning.decide(reading, planned)
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
        await planning.decide(session, planned)
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
        records.append(_item_record(plan_))
    totals = planning.totals(planned)
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
