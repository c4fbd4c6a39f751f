"""Applying retention: in chunks, each its own transaction, so a long run never holds locks
for long and a stopped run has done part of its work, never half a chunk.

A run that changes something holds the lease `catalog.retention` (kit.lease), so of several
catalog replicas one applies retention at a time; one asked for while another replica's runs
is refused (409). Every replica looks every `poll_s` whether the newest such run, of any
replica, finished `interval_s` ago, and then applies the policies, asking again once it holds
the lease: a replica that died mid-run has its run done again by another (its finished chunks
stay done) within about two lease TTLs.
"""

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loupe_catalog.audit import service as audit
from loupe_catalog.retention import repository
from loupe_shared.kit.auth import Principal, Role
from loupe_shared.kit.lease import Leases, LeaseTaken
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.problems import Problem

_log = get_logger("catalog.retention")
LEASE = "catalog.retention"
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


async def apply(
    leases: Leases,
    sessions: async_sessionmaker[AsyncSession],
    principal: Principal,
    *,
    request_id: str | None = None,
) -> dict[str, Any]:
    """A run that changes something, on one replica at a time."""
    try:
        return await leases.run(
            LEASE, lambda: run(sessions, principal, dry_run=False, request_id=request_id)
        )
    except LeaseTaken:
        raise Problem(
            409,
            "Retention is being applied by another catalog replica; try again once it is done.",
            headers={"Retry-After": "30"},
        ) from None


async def apply_periodically(
    leases: Leases, sessions: async_sessionmaker[AsyncSession], *, interval_s: float, poll_s: float
) -> None:
    """Apply the policies whenever the newest run is `interval_s` old (or, none having run,
    this process has been up that long); a failed round is logged and tried again."""
    started = time.monotonic()

    async def due() -> bool:
        async with sessions() as session:
            last = await repository.last_applied(session)
        if last is None:
            return time.monotonic() - started >= interval_s
        return (datetime.now(UTC) - last).total_seconds() >= interval_s

    await leases.periodically(
        LEASE,
        lambda: run(sessions, SCHEDULE, dry_run=False),
        due=due,
        poll_s=poll_s,
        event="retention.failed",
    )
