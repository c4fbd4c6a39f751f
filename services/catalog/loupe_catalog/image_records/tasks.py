"""Consumes `images.*` events into image records: a durable pull consumer, acknowledged only
after the row is committed; a redelivered event changes nothing (first sighting wins)."""

import asyncio
import json
from contextlib import suppress

from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from loupe_catalog.image_records import repository
from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import ImageDeleted, ImageStored
from loupe_shared.kit.logging import get_logger

_log = get_logger("catalog.image_records")
DURABLE = "catalog-image-records"


async def consume(engine: AsyncEngine, js: JetStreamContext, namespace: str) -> None:
    """Run until cancelled; a lost stream or connection is retried, never fatal."""
    while True:
        try:
            await _consume(engine, js, namespace)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.warning("image_records.consumer_restarting", error=str(exc))
            await asyncio.sleep(1)


async def _consume(engine: AsyncEngine, js: JetStreamContext, namespace: str) -> None:
    subscription = await js.pull_subscribe(
        subjects.subject("images.>", namespace),
        durable=DURABLE,
        stream=subjects.stream_name("IMAGES", namespace),
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_deliver=20,
            ack_wait=30,
        ),
    )
    prefix = f"{namespace}." if namespace else ""
    while True:
        try:
            messages = await subscription.fetch(100, timeout=2)
        except NatsTimeout:
            continue
        for message in messages:
            try:
                await _handle(engine, message.subject.removeprefix(prefix), message.data)
            except (ValidationError, json.JSONDecodeError, KeyError) as exc:
                _log.error("image_records.malformed_event", subject=message.subject, error=str(exc))
                await js.publish(
                    subjects.subject(f"{subjects.DEADLETTER}.images", namespace),
                    message.data,
                    headers={"Loupe-Reason": str(exc)[:500], "Loupe-Subject": message.subject},
                )
                await message.ack()
                continue
            except Exception as exc:  # database down: leave it for redelivery
                _log.warning("image_records.handle_failed", error=str(exc))
                with suppress(Exception):
                    await message.nak(delay=2)
                continue
            await message.ack()


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
                    "thumbnails": [t.model_dump() for t in event.thumbnails],
                    "first_seen_at": event.occurred_at,
                    "source": "event",
                },
            )
    elif subject == subjects.IMAGES_DELETED:
        deleted = ImageDeleted.model_validate_json(data)
        async with engine.begin() as conn:
            if not await repository.delete_unreferenced(conn, deleted.sha256):
                _log.warning("image_records.delete_kept_referenced", sha256=deleted.sha256)
