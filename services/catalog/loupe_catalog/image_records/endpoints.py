from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from loupe_catalog import pagination
from loupe_catalog.image_records import service
from loupe_catalog.image_records.schemas import (
    ImageRecord,
    ImageRecordPage,
    References,
    StorageUsage,
)
from loupe_shared.contracts.bounds import StorableStr, Timestamp
from loupe_shared.kit.auth import Permission, require
from loupe_shared.kit.db import Session

router = APIRouter(
    prefix="/api/image-records",
    tags=["image records"],
    dependencies=[Depends(require(Permission.IMAGES_READ))],
)
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]


@router.get(
    "",
    response_model=ImageRecordPage,
    summary="Image records, newest first, by kind, line and time (cursor pages)",
    description=(
        "The records of the images in the store (deleted ones left out), newest first by "
        "when the catalog first saw them. Tags are not filtered on: they live only in the "
        "images service's object metadata, not in the catalog's records."
    ),
)
async def list_image_records(
    session: Session,
    kind: Literal["master", "capture", "overlay"] | None = None,
    line_id: Annotated[
        StorableStr | None, Query(max_length=200, description='"" for images without a line')
    ] = None,
    since: Annotated[Timestamp | None, Query(description="first seen at or after")] = None,
    until: Annotated[Timestamp | None, Query(description="first seen before")] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_PAGE)] = pagination.DEFAULT_PAGE,
) -> ImageRecordPage:
    return await service.list_page(
        session,
        kind=kind,
        line_id=line_id,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )


@router.get(
    "/{sha256}", response_model=ImageRecord, summary="What the catalog knows about an image"
)
async def get_image_record(sha256: Sha256, session: Session) -> ImageRecord:
    return await service.get(session, sha256)


@router.get(
    "/{sha256}/references",
    response_model=References,
    summary="Which program revisions use an image (asked before deleting it)",
)
async def get_references(sha256: Sha256, session: Session) -> References:
    return await service.references(session, sha256)


storage_router = APIRouter(
    prefix="/api/storage",
    tags=["storage"],
    dependencies=[Depends(require(Permission.INTEGRITY_READ))],
)


@storage_router.get(
    "/usage",
    summary="Bytes and object counts in the image store per kind and per line",
    description=(
        "Counted from the image records (kept by the `images.stored` / `images.deleted` "
        "events): originals by kind (master, capture, overlay), their thumbnails as kind "
        '`thumbnail`; images uploaded without a line count under the line id `""`.'
    ),
)
async def storage_usage(session: Session) -> StorageUsage:
    return await service.usage(session)
