"""Golden sets: attach, relabel and remove labelled captures of a revision (audited), and run
the revision over them."""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loupe_catalog.audit import service as audit
from loupe_catalog.golden import repository
from loupe_catalog.golden.evaluator import Evaluator
from loupe_catalog.golden.schemas import Confusion, GoldenImageWrite, ImageVerdict, Label
from loupe_catalog.image_records import repository as image_records
from loupe_catalog.images_client import ImagesClient, is_stored
from loupe_catalog.programs import repository as programs
from loupe_shared.contracts.inspect import InspectedResult
from loupe_shared.kit.audit import Actor
from loupe_shared.kit.auth import Principal
from loupe_shared.kit.problems import Problem

MAX_IMAGES = 500


async def _revision(session: AsyncSession, program_id: uuid.UUID, revision: int) -> RowMapping:
    row = await programs.get_revision(session, program_id, revision)
    if row is None:
        raise Problem(404, f"Program {program_id} has no revision {revision}.")
    return row


async def golden_set(
    session: AsyncSession, program_id: uuid.UUID, revision: int
) -> list[RowMapping]:
    await _revision(session, program_id, revision)
    return await repository.images(session, program_id, revision)


async def attach(
    session: AsyncSession,
    program_id: uuid.UUID,
    revision: int,
    sha256: str,
    body: GoldenImageWrite,
    actor: Actor,
    images: ImagesClient,
) -> bool:
    await _revision(session, program_id, revision)
    # Held shared until the commit, like a program save: a deletion of the capture either
    # sees this reference or is seen by it.
    if not await image_records.lock_for_reference(session, sha256):
        raise Problem(409, f"Image {sha256} is being deleted; it cannot join a golden set.")
    # The capture's `images.stored` event may not have arrived yet: the images service
    # answers then.
    if not await is_stored(
        session, images, sha256, authorization=actor.authorization, request_id=actor.request_id
    ):
        raise Problem(
            422,
            f"No image {sha256} is stored; upload the capture first.",
            errors=[{"field": "path:sha256", "message": "not a stored image"}],
        )
    if await repository.count(session, program_id, revision) >= MAX_IMAGES:
        raise Problem(409, f"A golden set holds at most {MAX_IMAGES} images.")
    created = await repository.upsert(
        session,
        {
            "program_id": program_id,
            "revision": revision,
            "capture_sha256": sha256,
            "label": body.label,
            "note": body.note,
            "added_at": datetime.now(UTC),
            "added_by": actor.principal.name,
        },
    )
    await audit.record(
        session,
        actor.principal,
        action="golden.attached" if created else "golden.relabelled",
        target=f"program:{program_id}@{revision}",
        request_id=actor.request_id,
        details={"capture_sha256": sha256, "label": body.label},
    )
    return created


async def detach(
    session: AsyncSession,
    program_id: uuid.UUID,
    revision: int,
    sha256: str,
    principal: Principal,
    request_id: str | None,
) -> None:
    await _revision(session, program_id, revision)
    if not await repository.remove(session, program_id, revision, sha256):
        raise Problem(404, f"Image {sha256} is not in this revision's golden set.")
    await audit.record(
        session,
        principal,
        action="golden.detached",
        target=f"program:{program_id}@{revision}",
        request_id=request_id,
        details={"capture_sha256": sha256},
    )


async def runs(
    session: AsyncSession, program_id: uuid.UUID, revision: int, limit: int
) -> list[RowMapping]:
    await _revision(session, program_id, revision)
    return await repository.runs(session, program_id, revision, limit)


async def run_by_id(
    session: AsyncSession, program_id: uuid.UUID, revision: int, run_id: uuid.UUID
) -> RowMapping:
    row = await repository.run(session, run_id)
    if row is None or row["program_id"] != program_id or row["revision"] != revision:
        raise Problem(404, f"No test run {run_id} for revision {revision} of this program.")
    return row


def _verdict(sha: str, label: Label, result: InspectedResult) -> ImageVerdict:
    expected = "pass" if label == "good" else "fail"
    return ImageVerdict(
        capture_sha256=sha,
        label=label,
        verdict=result.verdict,
        correct=result.verdict == expected,
        reason=result.reason,
        defects=len(result.defects),
        score=result.score,
        processing_ms=result.processing_ms,
    )


def confusion(verdicts: list[ImageVerdict]) -> Confusion:
    matrix = Confusion()
    for v in verdicts:
        if v.verdict == "error":
            matrix.errors += 1
        elif v.label == "good":
            if v.verdict == "pass":
                matrix.true_accepts += 1
            else:
                matrix.false_rejects += 1
        elif v.verdict == "fail":
            matrix.true_rejects += 1
        else:
            matrix.false_accepts += 1
    return matrix


async def run(
    sessions: async_sessionmaker[AsyncSession],
    evaluator: Evaluator,
    program_id: uuid.UUID,
    revision: int,
    principal: Principal,
    request_id: str | None,
) -> dict[str, Any]:
    """Inspect every golden image with the revision and store the outcome. No transaction
    is held while the workers inspect."""
    started = datetime.now(UTC)
    async with sessions() as session:
        row = await _revision(session, program_id, revision)
        images = await repository.images(session, program_id, revision)
    if not images:
        raise Problem(409, "This revision has no golden images; attach labelled captures first.")
    results = await evaluator.evaluate(
        program_id, revision, [image["capture_sha256"] for image in images]
    )
    verdicts = [
        _verdict(image["capture_sha256"], image["label"], results[image["capture_sha256"]])
        for image in images
    ]
    matrix = confusion(verdicts)
    values = {
        "id": uuid.uuid4(),
        "program_id": program_id,
        "revision": revision,
        "started_at": started,
        "finished_at": datetime.now(UTC),
        "started_by": principal.name,
        "data_checksum": row["data_checksum"],
        "confusion": matrix.model_dump(),
        "passed": all(v.correct for v in verdicts),
        "images": [v.model_dump() for v in verdicts],
    }
    async with sessions() as session, session.begin():
        await repository.insert_run(session, values)
        await audit.record(
            session,
            principal,
            action="golden.tested",
            target=f"program:{program_id}@{revision}",
            request_id=request_id,
            details={"run_id": str(values["id"]), **matrix.model_dump()},
        )
    return values
