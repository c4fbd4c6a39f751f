"""Appends `audit.recorded` events from other services to the audit log, once per event."""

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from loupe_catalog.audit import repository
from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import AuditRecorded

DURABLE = "catalog-audit"


def handler(engine: AsyncEngine) -> Callable[[str, bytes], Awaitable[None]]:
    async def handle(subject: str, data: bytes) -> None:
        if subject != subjects.AUDIT_RECORDED:
            return
        event = AuditRecorded.model_validate_json(data)
        async with engine.begin() as conn:
            await repository.record_once(
                conn,
                {
                    "event_id": event.event_id,
                    "at": event.occurred_at,
                    "actor": event.actor,
                    "actor_token_id": event.actor_token_id,
                    "role": event.role,
                    "action": event.action,
                    "target": event.target,
                    "request_id": event.request_id,
                    "before_checksum": event.before_checksum,
                    "after_checksum": event.after_checksum,
                    "details": event.details,
                },
            )

    return handle
