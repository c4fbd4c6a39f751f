"""Writing audit rows: always inside the transaction of the change they describe."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from loupe_catalog.audit import repository
from loupe_shared.kit.auth import Principal


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
