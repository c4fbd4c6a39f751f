from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from loupe_backup.backups.security import allow
from loupe_backup.exports import service
from loupe_shared.kit.audit import publish_audit
from loupe_shared.kit.auth import Permission, Principal
from loupe_shared.kit.problems import Problem
from loupe_shared.kit.responses import FastJSONResponse

router = APIRouter(prefix="/api/exports", tags=["exports"])
Exporter = Annotated[Principal, Depends(allow(Permission.BACKUPS_READ, heavy=True))]


@router.get(
    "",
    summary="Everything as the frontend's JSON backup document (small installations)",
    response_class=FastJSONResponse,
)
async def export(
    request: Request,
    principal: Exporter,
    images: bool = True,
    results: Annotated[int, Query(ge=0, le=100_000)] = 1000,
    logs: Annotated[int, Query(ge=0, le=100_000)] = 1000,
) -> Response:
    app: Any = request.app
    try:
        document = await service.export(
            app.state.settings, app.state.s3, images=images, results=results, logs=logs
        )
    except service.TooLarge as exc:
        raise Problem(413, str(exc)) from None
    await publish_audit(
        app.state.js,
        principal,
        action="backup.export",
        target="export:json",
        request_id=request.scope["state"].get("request_id"),
        namespace=app.state.settings.namespace,
        details=document["metadata"],
    )
    stamp = document["timestamp"][:19].replace(":", "")
    return FastJSONResponse(
        document,
        headers={"Content-Disposition": f'attachment; filename="loupe-export-{stamp}.json"'},
    )
