"""Auditing from services that do not own the audit log: publish `audit.recorded`; the
catalog appends it (idempotently, by event id)."""

from typing import Any

from nats.js.client import JetStreamContext

from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import AuditRecorded
from loupe_shared.kit.auth import Principal


async def publish_audit(
    js: JetStreamContext,
    principal: Principal,
    *,
    action: str,
    target: str,
    request_id: str | None,
    namespace: str = "",
    details: dict[str, Any] | None = None,
) -> AuditRecorded:
    event = AuditRecorded(
        actor=principal.name,
        actor_token_id=principal.token_id,
        role=str(principal.role),
        action=action,
        target=target,
        request_id=request_id,
        details=details or {},
    )
    await js.publish(
        subjects.subject(subjects.AUDIT_RECORDED, namespace),
        event.model_dump_json().encode(),
        headers={"Nats-Msg-Id": event.event_id},
    )
    return event
