import uuid
from datetime import UTC, datetime
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
    line_id: str
    thumbnail_bytes: int
    deleted_at: datetime | None


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


storage_router = APIRouter(
    prefix="/api/storage",
    tags=["storage"],
    dependencies=[Depends(require(Permission.INTEGRITY_READ))],
)


class Usage(BaseModel):
    bytes: int = 0
    objects: int = 0


class LineUsage(BaseModel):
    line_id: str
    total: Usage
    kinds: dict[str, Usage]


class StorageUsage(BaseModel):
    total: Usage
    kinds: dict[str, Usage]
    lines: list[LineUsage]
    counted_at: datetime


def _add(into: dict[str, Usage], kind: str, size: int, count: int) -> None:
    found = into.setdefault(kind, Usage())
    found.bytes += size
    found.objects += count


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
    kinds: dict[str, Usage] = {k: Usage() for k in ("master", "capture", "overlay", "thumbnail")}
    lines: dict[str, dict[str, Usage]] = {}
    for row in await repository.usage(session):
        per_line = lines.setdefault(row["line_id"], {})
        for into in (kinds, per_line):
            _add(into, row["kind"], int(row["bytes"]), int(row["objects"]))
            _add(into, "thumbnail", int(row["thumbnail_bytes"]), int(row["thumbnail_objects"]))
    total = Usage(
        bytes=sum(u.bytes for u in kinds.values()), objects=sum(u.objects for u in kinds.values())
    )
    return StorageUsage(
        total=total,
        kinds=kinds,
        lines=[
            LineUsage(
                line_id=line,
                total=Usage(
                    bytes=sum(u.bytes for u in found.values()),
                    objects=sum(u.objects for u in found.values()),
                ),
                kinds=found,
            )
            for line, found in sorted(lines.items())
        ],
        counted_at=datetime.now(UTC),
    )
