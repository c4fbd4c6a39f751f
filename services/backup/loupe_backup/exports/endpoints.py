from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from loupe_backup.backups.security import acting
from loupe_backup.exports import service
from loupe_backup.exports.schemas import ExportDocument
from loupe_backup.state import BackupState
from loupe_shared.kit.audit import Actor
from loupe_shared.kit.auth import Permission
from loupe_shared.kit.problems import Problem
from loupe_shared.kit.responses import FastJSONResponse

router = APIRouter(prefix="/api/exports", tags=["exports"])
Exporter = Annotated[Actor, Depends(acting(Permission.BACKUPS_READ, heavy=True))]


@router.get(
    "",
    summary="Everything as the frontend's JSON backup document (small installations)",
    response_class=FastJSONResponse,
    response_model=ExportDocument,
)
async def export(
    state: BackupState,
    actor: Exporter,
    images: bool = True,
    results: Annotated[int, Query(ge=0, le=100_000)] = 1000,
    logs: Annotated[int, Query(ge=0, le=100_000)] = 1000,
) -> Response:
    try:
        document = await service.export(
            state.settings, state.s3, images=images, results=results, logs=logs
        )
    except service.TooLarge as exc:
        raise Problem(413, str(exc)) from None
    await state.backups.audit(actor, "backup.export", "export:json", **document["metadata"])
    stamp = document["timestamp"][:19].replace(":", "")
    return FastJSONResponse(
        document,
        headers={"Content-Disposition": f'attachment; filename="loupe-export-{stamp}.json"'},
    )
