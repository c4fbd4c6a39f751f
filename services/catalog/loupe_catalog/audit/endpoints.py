from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from loupe_catalog import pagination
from loupe_catalog.audit import service
from loupe_shared.contracts.bounds import StorableStr, Timestamp
from loupe_shared.kit.auth import Permission, require
from loupe_shared.kit.db import Session
from loupe_shared.kit.problems import VALID_REQUEST_ID

router = APIRouter(prefix="/api/audit", tags=["audit"])


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    actor_token_id: str | None
    role: str
    action: str
    target: str
    request_id: str | None
    before_checksum: str | None
    after_checksum: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None


@router.get(
    "",
    response_model=AuditPage,
    summary="The audit log, newest first",
    dependencies=[Depends(require(Permission.AUDIT_READ))],
)
async def list_audit(
    session: Session,
    actor: Annotated[StorableStr | None, Query(max_length=200)] = None,
    target: Annotated[
        StorableStr | None, Query(max_length=300, description="e.g. program:<id>")
    ] = None,
    action: Annotated[
        StorableStr | None, Query(max_length=100, description="e.g. programs.update")
    ] = None,
    request_id: Annotated[
        str | None,
        Query(
            pattern=VALID_REQUEST_ID.pattern,
            description="the request that made the change (its X-Request-ID)",
        ),
    ] = None,
    since: Annotated[Timestamp | None, Query(description="at or after")] = None,
    until: Annotated[Timestamp | None, Query(description="before")] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_PAGE)] = pagination.DEFAULT_PAGE,
) -> AuditPage:
    rows, next_cursor = await service.list_page(
        session,
        actor=actor,
        target=target,
        action=action,
        request_id=request_id,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    items = [AuditEntry.model_validate(dict(row)) for row in rows]
    return AuditPage(items=items, next_cursor=next_cursor)
