"""Applying retention: in chunks, each its own transaction, so a long run never holds locks
for long and a stopped run has done part of its work, never half a chunk."""

import uuid
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loupe_catalog.audit import service as audit
from loupe_catalog.retention import repository
from loupe_shared.kit.auth import Principal, Role
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.problems import Problem

_log = get_logger("catalog.retention")
SCHEDULE = Principal(
    token_id="retention-schedule",  # noqa: S106 (an id, not a secret)
    name="retention-schedule",
    role=Role.ADMIN,
)


async def put_policy(
    session: AsyncSession,
    principal: Principal,
    scope: str,
    target: str,
    *,
    results_max_age_days: int | None,
    captures_max_age_days: int | None,
    request_id: str | None,
) -> RowMapping:
    """Set a policy, with its audit row."""
    if results_max_age_days is None and captures_max_age_days is None:
        raise Problem(422, "Give results_max_age_days, captures_max_age_days or both.")
    row = await repository.put_policy(
        session,
        {
            "scope": scope,
            "target": target,
            "results": results_max_age_days,
            "captures": captures_max_age_days,
            "by": principal.name,
        },
    )
    await audit.record(
        session,
        principal,
        action="retention.policy_set",
        target=f"retention:{scope}:{target}",
        request_id=request_id,
        details={
            "results_max_age_days": results_max_age_days,
            "captures_max_age_days": captures_max_age_days,
        },
    )
    return row


async def delete_policy(
    session: AsyncSession,
    principal: Principal,
    scope: str,
    target: str,
    *,
    request_id: str | None,
) -> None:
    """Remove a policy, with its audit row; 404 when there is none."""
    if not await repository.delete_policy(session, scope, target):
        raise Problem(404, f"No retention policy for {scope} {target}.")
    await audit.record(
        session,
        principal,
        action="retention.policy_removed",
        target=f"retention:{scope}:{target}",
        request_id=request_id,
    )


async def run(
    sessions: async_sessionmaker[AsyncSession],
    principal: Principal,
    *,
    dry_run: bool,
    request_id: str | None = None,
) -> dict[str, Any]:
    run_id = uuid.uuid4()
    async with sessions() as session:
        preview = await repository.preview(session)
    report: dict[str, Any] = {
        "id": str(run_id),
        "dry_run": dry_run,
        "would_expire_results": sum(g["count"] for g in preview["results"]),
        "would_release_captures": sum(g["count"] for g in preview["captures"]),
        "groups": preview,
        "note": (
            "Released captures are deleted by the image collector after its grace period, "
            "and never while a program revision or a remaining result uses them; master "
            "images are never touched."
        ),
    }
    if not dry_run:
        expired = released = images = 0
        while True:
            async with sessions() as session, session.begin():
                count = await repository.expire_results(session)
            expired += count
            if count == 0:
                break
        while True:
            async with sessions() as session, session.begin():
                changed, distinct = await repository.release_captures(session)
            released += changed
            images += distinct
            if changed == 0:
                break
        report |= {"expired_results": expired, "released_captures": released, "images": images}
        _log.info("retention.applied", expired=expired, released=released)
    async with sessions() as session, session.begin():
        await repository.record_run(session, run_id, dry_run, principal.name, report)
        if not dry_run:
            await audit.record(
                session,
                principal,
                action="retention.run",
                target=f"retention-run:{run_id}",
                request_id=request_id,
                details={k: v for k, v in report.items() if k != "groups"},
            )
    return report
