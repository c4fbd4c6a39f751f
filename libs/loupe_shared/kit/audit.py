"""Auditing from services that do not own the audit log: publish `audit.recorded`; the
catalog appends it (idempotently, by event id)."""

from dataclasses import dataclass
from typing import Any

from nats.js.client import JetStreamContext
from starlette.requests import Request

from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import AuditRecorded
from loupe_shared.kit.auth import Principal
from loupe_shared.kit.requests import request_id as request_id_of


@dataclass(frozen=True)
class Actor:
    """Who asks, as a service layer sees it: the principal, the request id the audit log
    links to, and the caller's token (passed on to another service where it must be)."""

    principal: Principal
    request_id: str | None
    authorization: str = ""

    @classmethod
    def of(cls, request: Request, principal: Principal) -> "Actor":
        return cls(
            principal=principal,
            request_id=request_id_of(request),
            authorization=request.headers.get("authorization", ""),
        )


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


async def audit_actor(
    js: JetStreamContext,
    actor: Actor,
    *,
    action: str,
    target: str,
    namespace: str = "",
    details: dict[str, Any] | None = None,
) -> AuditRecorded:
    """`publish_audit` for what an actor did: the request id comes with the actor."""
    return await publish_audit(
        js,
        actor.principal,
        action=action,
        target=target,
        request_id=actor.request_id,
        namespace=namespace,
        details=details,
    )
