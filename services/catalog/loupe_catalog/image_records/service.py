"""Image records: one image's record, the revisions that use it, the store's usage."""

import re
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from loupe_catalog import pagination
from loupe_catalog.image_records import repository
from loupe_catalog.image_records.schemas import (
    ImageRecord,
    ImageRecordPage,
    LineUsage,
    Reference,
    References,
    StorageUsage,
    Usage,
)
from loupe_shared.kit.problems import Problem


async def get(session: AsyncSession, sha256: str) -> ImageRecord:
    row = await repository.get(session, sha256)
    if row is None:
        raise Problem(404, f"No image record {sha256}.")
    return ImageRecord.model_validate(dict(row))


LISTING = "image-records"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _after(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    key, sha256 = pagination.decode(cursor, LISTING)
    if not _SHA256.match(sha256):
        raise pagination.invalid_cursor()
    try:
        return pagination.time_key(key), sha256
    except ValueError:
        raise pagination.invalid_cursor() from None


async def list_page(
    session: AsyncSession,
    *,
    kind: str | None,
    line_id: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> ImageRecordPage:
    """A page of the live records, newest first, and the cursor of the next."""
    if since and until and since >= until:
        raise Problem(
            422,
            "query:since: must be before until",
            errors=[{"field": "query:since", "message": "must be before until"}],
        )
    rows = await repository.page(
        session,
        kind=kind,
        line_id=line_id,
        since=since,
        until=until,
        after=_after(cursor),
        limit=limit + 1,
    )
    found, next_cursor = pagination.page(
        rows,
        limit,
        lambda last: pagination.encode(LISTING, last["first_seen_at"].isoformat(), last["sha256"]),
    )
    items = [ImageRecord.model_validate(dict(row)) for row in found]
    return ImageRecordPage(items=items, next_cursor=next_cursor)


async def references(session: AsyncSession, sha256: str) -> References:
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


def _add(into: dict[str, Usage], kind: str, size: int, count: int) -> None:
    found = into.setdefault(kind, Usage())
    found.bytes += size
    found.objects += count


async def usage(session: AsyncSession) -> StorageUsage:
    """Counted from the image records: originals by kind, their thumbnails as `thumbnail`."""
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
