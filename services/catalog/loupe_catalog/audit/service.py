"""Writing audit rows (always inside the transaction of the change they describe) and
reading the log a page at a time."""

from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from loupe_catalog import pagination
from loupe_catalog.audit import repository
from loupe_shared.contracts.bounds import INT64_MAX
from loupe_shared.kit.auth import Principal
from loupe_shared.kit.problems import Problem


async def record(
    session: AsyncSession,
    principal: Principal,
    *,
    action: str,
    target: str,
    request_id: str | None,
    before: str | None = None,
    after: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await repository.record(
        session,
        {
            "actor": principal.name,
            "actor_token_id": principal.token_id,
            "role": str(principal.role),
            "action": action,
            "target": target,
            "request_id": request_id,
            "before_checksum": before,
            "after_checksum": after,
            "details": details or {},
        },
    )


async def list_page(
    session: AsyncSession,
    *,
    actor: str | None,
    target: str | None,
    action: str | None,
    request_id: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[RowMapping], str | None]:
    """A page of the log, newest first, and the cursor of the next."""
    before_id = pagination.decode_position(cursor, "audit", maximum=INT64_MAX)
    if since and until and since >= until:
        raise Problem(
            422,
            "query:since: must be before until",
            errors=[{"field": "query:since", "message": "must be before until"}],
        )
    rows = await repository.list_page(
        session,
        actor=actor,
        target=target,
        action=action,
        request_id=request_id,
        since=since,
        until=until,
        before_id=before_id,
        limit=limit + 1,
    )
    return pagination.page(rows, limit, lambda last: pagination.encode("audit", last["id"], ""))
