"""Rolling a legacy migration run back: programs it created are archived, programs it
revised get their content from before when nothing changed them since."""

import uuid
from datetime import datetime

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from loupe_catalog.audit import service as audit
from loupe_catalog.images_client import ImagesClient
from loupe_catalog.legacy import repository
from loupe_catalog.legacy.schemas import RollbackItem
from loupe_catalog.programs import service as programs
from loupe_catalog.programs.schemas import ProgramWrite
from loupe_shared.kit.audit import Actor
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.problems import Problem

_log = get_logger("catalog.legacy")


async def rollback(
    session: AsyncSession, run_id: uuid.UUID, actor: Actor, images: ImagesClient
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
    actor: Actor,
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
