from fastapi import APIRouter, Request
from pydantic import BaseModel

from loupe_catalog.schema import service
from loupe_shared import __version__
from loupe_shared.kit.auth import CurrentPrincipal

router = APIRouter(prefix="/api/schema", tags=["schema"])


class SchemaInfo(BaseModel):
    current_revision: str | None
    head_revision: str | None
    up_to_date: bool
    app_version: str


@router.get("", summary="Database schema revision and app version")
async def get_schema(request: Request, _: CurrentPrincipal) -> SchemaInfo:
    found = await service.state(request.app.state.engine)
    return SchemaInfo(
        current_revision=found.current,
        head_revision=found.head,
        up_to_date=found.up_to_date,
        app_version=__version__,
    )
