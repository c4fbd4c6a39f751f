import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel

from loupe_catalog.image_records import repository
from loupe_shared.kit.auth import Permission, require
from loupe_shared.kit.db import Session
from loupe_shared.kit.problems import Problem

router = APIRouter(
    prefix="/api/image-records",
    tags=["image records"],
    dependencies=[Depends(require(Permission.IMAGES_READ))],
)
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]


class ImageRecord(BaseModel):
    sha256: str
    size: int
    width: int
    height: int
    content_type: str
    kind: str
    thumbnails: list[dict[str, Any]]
    first_seen_at: datetime
    source: str


class Reference(BaseModel):
    program_id: uuid.UUID
    name: str
    archived: bool
    revision: int
    current: bool


class References(BaseModel):
    sha256: str
    referenced: bool
    programs: list[Reference]


@router.get("/{sha256}", summary="What the catalog knows about an image")
async def get_image_record(sha256: Sha256, session: Session) -> ImageRecord:
    row = await repository.get(session, sha256)
    if row is None:
        raise Problem(404, f"No image record {sha256}.")
    return ImageRecord.model_validate(dict(row))


@router.get(
    "/{sha256}/references",
    summary="Which program revisions use an image (asked before deleting it)",
)
async def get_references(sha256: Sha256, session: Session) -> References:
    rows = await repository.references(session, sha256)
    refs = [
        Reference(
            program_id=row["program_id"],
            name=row["name"],
            archived=row["archived_at"] is not None,
            revision=row["revision"],
            current=row["revision"] == row["current_revision"],
        )
        for row in rows
    ]
    return References(sha256=sha256, referenced=bool(refs), programs=refs)
