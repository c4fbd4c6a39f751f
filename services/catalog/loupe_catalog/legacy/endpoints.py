import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from loupe_catalog import pagination
from loupe_catalog.legacy import service
from loupe_catalog.legacy.metrics import MigrationMetrics
from loupe_catalog.legacy.schemas import (
    ItemReport,
    Report,
    RollbackReport,
    Run,
    RunPage,
    RunSummary,
)
from loupe_catalog.state import Catalog, Images
from loupe_shared.kit.audit import Actor
from loupe_shared.kit.auth import Permission, Principal, require
from loupe_shared.kit.db import Session
from loupe_shared.kit.problems import Problem
from loupe_shared.kit.state import kit_state

router = APIRouter(prefix="/api/migrations", tags=["migrations"])
CanMigrate = Annotated[Principal, Depends(require(Permission.MIGRATIONS_RUN))]

_EXPORT_BODY = {
    "requestBody": {
        "required": True,
        "description": "The `vision_programs` array, the whole localStorage object (values "
        "as JSON strings), or the frontend's backup file.",
        "content": {"application/json": {"schema": {"type": ["array", "object"]}}},
    }
}


async def _body(request: Request, limit: int) -> bytes:
    """The export, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    too_large = Problem(
        413,
        f"The export is larger than {limit // (1024 * 1024)} MiB; split its program array.",
    )
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/legacy",
    summary="Migrate programs from the legacy frontend's localStorage (a dry run by default)",
    description=(
        "A dry run (the default) reports per program what would happen and writes nothing. "
        "`dry_run=false` uploads the master images the images service lacks, creates the "
        "programs (or new revisions of programs migrated before), verifies them and records "
        "the run. Running the same export again changes nothing."
    ),
    response_model=Report,
    responses={201: {"model": Report, "description": "applied; the recorded run"}},
    openapi_extra=_EXPORT_BODY,
)
async def migrate_legacy(
    request: Request,
    session: Session,
    catalog: Catalog,
    principal: CanMigrate,
    dry_run: bool = True,
) -> JSONResponse:
    settings = catalog.settings
    body = await _body(request, settings.legacy_max_body_bytes)
    if dry_run:
        report = await service.dry_run(session, body, settings)
        return JSONResponse(report.model_dump(mode="json"))
    report = await service.apply(
        session, catalog.sessions, body, settings, Actor.of(request, principal), catalog.images
    )
    MigrationMetrics.of(kit_state(request.app).registry).count_on_commit(session, report.items)
    return JSONResponse(
        report.model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"/api/migrations/{report.run_id}"},
    )


@router.get("", summary="Recorded migration runs, newest first")
async def list_runs(
    session: Session,
    _: CanMigrate,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_PAGE)] = pagination.DEFAULT_PAGE,
) -> RunPage:
    rows, next_cursor = await service.list_runs(session, cursor, limit)
    return RunPage(
        items=[RunSummary.model_validate(dict(row)) for row in rows], next_cursor=next_cursor
    )


@router.get("/{run_id}", summary="One migration run with every program's outcome")
async def get_run(run_id: uuid.UUID, session: Session, _: CanMigrate) -> Run:
    run, items = await service.get_run(session, run_id)
    return Run.model_validate(
        {**dict(run), "items": [ItemReport.model_validate(dict(item)) for item in items]}
    )


@router.post(
    "/{run_id}/rollback",
    summary="Undo a migration run: its new programs archived, its revisions reverted",
    description=(
        "Programs the run created are archived and let go of their legacy ids (a later run "
        "imports them afresh); programs it revised get a new revision with their content "
        "from before, unless they changed since. Images are left to the images service's "
        "garbage collector."
    ),
)
async def rollback_run(
    run_id: uuid.UUID, request: Request, session: Session, images: Images, principal: CanMigrate
) -> RollbackReport:
    at, items = await service.rollback(session, run_id, Actor.of(request, principal), images)
    return RollbackReport(run_id=run_id, rolled_back_at=at, items=items)
