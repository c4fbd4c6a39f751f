"""Turns `images.*` events into image records; a redelivered event changes nothing."""

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from loupe_catalog.image_records import repository
from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import ImageDeleted, ImageStored
from loupe_shared.kit.logging import get_logger

_log = get_logger("catalog.image_records")
DURABLE = "catalog-image-records"


def handler(engine: AsyncEngine) -> Callable[[str, bytes], Awaitable[None]]:
    async def handle(subject: str, data: bytes) -> None:
        await _handle(engine, subject, data)

    return handle


async def _handle(engine: AsyncEngine, subject: str, data: bytes) -> None:
    if subject == subjects.IMAGES_STORED:
        event = ImageStored.model_validate_json(data)
        async with engine.begin() as conn:
            await repository.upsert(
                conn,
                {
                    "sha256": event.sha256,
                    "size": event.size,
                    "width": event.width,
                    "height": event.height,
                    "content_type": event.content_type,
                    "kind": event.kind,
                    "line_id": event.line_id,
                    "thumbnails": [t.model_dump() for t in event.thumbnails],
                    "thumbnail_bytes": sum(t.bytes for t in event.thumbnails),
                    "first_seen_at": event.occurred_at,
                    "source": "event",
                },
            )
    elif subject == subjects.IMAGES_DELETED:
        deleted = ImageDeleted.model_validate_json(data)
        async with engine.begin() as conn:
            outcome = await repository.finish_deletion(conn, deleted.sha256, forced=deleted.forced)
        if outcome == "marked":
            _log.warning(
                "image_records.referenced_blob_deleted", sha256=deleted.sha256, forced=True
            )
