from fastapi import APIRouter
from pydantic import BaseModel

from loupe_catalog.schema import service
from loupe_catalog.state import Catalog
from loupe_shared import __version__
from loupe_shared.kit.auth import CurrentPrincipal

router = APIRouter(prefix="/api/schema", tags=["schema"])


class SchemaInfo(BaseModel):
    current_revision: str | None
    head_revision: str | None
    up_to_date: bool
    app_version: str


@router.get("", summary="Database schema revision and app version")
async def get_schema(catalog: Catalog, _: CurrentPrincipal) -> SchemaInfo:
    found = await service.state(catalog.engine)
    return SchemaInfo(
        current_revision=found.current,
        head_revision=found.head,
        up_to_date=found.up_to_date,
        app_version=__version__,
    )
