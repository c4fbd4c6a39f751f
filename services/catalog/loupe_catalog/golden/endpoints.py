import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy.engine import RowMapping

from loupe_catalog.golden import service
from loupe_catalog.golden.evaluator import Evaluator
from loupe_catalog.golden.schemas import (
    GoldenAttachment,
    GoldenImage,
    GoldenImageWrite,
    GoldenRun,
    GoldenRunPage,
    GoldenSet,
)
from loupe_catalog.state import Catalog, Images
from loupe_shared.contracts.bounds import PositiveInt32
from loupe_shared.kit.audit import Actor
from loupe_shared.kit.auth import Permission, Principal, require
from loupe_shared.kit.db import Session
from loupe_shared.kit.requests import request_id

router = APIRouter(prefix="/api/programs/{program_id}/revisions/{revision}", tags=["golden sets"])
CanRead = Annotated[Principal, Depends(require(Permission.PROGRAMS_READ))]
CanWrite = Annotated[Principal, Depends(require(Permission.PROGRAMS_WRITE))]
Revision = Annotated[PositiveInt32, Path()]
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]


def _run(row: RowMapping | dict[str, Any]) -> GoldenRun:
    return GoldenRun.model_validate(dict(row))


@router.get("/golden-set", summary="The revision's labelled captures")
async def get_golden_set(
    program_id: uuid.UUID, revision: Revision, session: Session, _: CanRead
) -> GoldenSet:
    rows = await service.golden_set(session, program_id, revision)
    items = [GoldenImage.model_validate(dict(row)) for row in rows]
    return GoldenSet(
        program_id=program_id,
        revision=revision,
        items=items,
        good=sum(i.label == "good" for i in items),
        bad=sum(i.label == "bad" for i in items),
    )


@router.put(
    "/golden-set/{sha256}",
    summary="Attach a stored capture as a good or bad part (or change its label)",
    responses={
        201: {"model": GoldenAttachment, "description": "attached"},
        200: {"description": "label changed"},
    },
)
async def put_golden_image(
    program_id: uuid.UUID,
    revision: Revision,
    sha256: Sha256,
    body: GoldenImageWrite,
    request: Request,
    response: Response,
    session: Session,
    images: Images,
    principal: CanWrite,
) -> GoldenAttachment:
    created = await service.attach(
        session,
        program_id,
        revision,
        sha256,
        body,
        Actor.of(request, principal),
        images,
    )
    response.status_code = 201 if created else 200
    return GoldenAttachment(capture_sha256=sha256, label=body.label, note=body.note)


@router.delete("/golden-set/{sha256}", status_code=204, summary="Remove a capture from the set")
async def delete_golden_image(
    program_id: uuid.UUID,
    revision: Revision,
    sha256: Sha256,
    request: Request,
    session: Session,
    principal: CanWrite,
) -> Response:
    await service.detach(session, program_id, revision, sha256, principal, request_id(request))
    return Response(status_code=204)


@router.post(
    "/test-runs",
    status_code=201,
    summary="Inspect every golden image with this revision; answers the confusion matrix",
)
async def create_test_run(
    program_id: uuid.UUID,
    revision: Revision,
    request: Request,
    catalog: Catalog,
    principal: CanWrite,
) -> GoldenRun:
    evaluator = Evaluator(catalog.nats, catalog.settings.namespace)
    values = await service.run(
        catalog.sessions,
        evaluator,
        program_id,
        revision,
        principal,
        request_id(request),
    )
    return _run(values)


@router.get("/test-runs", summary="The revision's test runs, newest first")
async def list_test_runs(
    program_id: uuid.UUID,
    revision: Revision,
    session: Session,
    _: CanRead,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> GoldenRunPage:
    rows = await service.runs(session, program_id, revision, limit)
    return GoldenRunPage(items=[_run(row) for row in rows])


@router.get("/test-runs/{run_id}", summary="One test run")
async def get_test_run(
    program_id: uuid.UUID, revision: Revision, run_id: uuid.UUID, session: Session, _: CanRead
) -> GoldenRun:
    return _run(await service.run_by_id(session, program_id, revision, run_id))
