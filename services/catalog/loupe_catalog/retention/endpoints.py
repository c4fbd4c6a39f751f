import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from loupe_catalog.retention import repository, service
from loupe_catalog.state import HeldLeases, Sessions
from loupe_shared.contracts.bounds import StorableStr
from loupe_shared.contracts.results import LINE_ID
from loupe_shared.kit.auth import Permission, Principal, require
from loupe_shared.kit.db import Session
from loupe_shared.kit.problems import Problem
from loupe_shared.kit.requests import request_id

router = APIRouter(prefix="/api/retention", tags=["retention"])
CanManage = Annotated[Principal, Depends(require(Permission.RETENTION_MANAGE))]
Scope = Literal["all", "line", "program"]
Target = Annotated[StorableStr, Path(max_length=100)]


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    results_max_age_days: int | None = Field(default=None, ge=1, le=36500)
    captures_max_age_days: int | None = Field(default=None, ge=1, le=36500)


class Policy(PolicyBody):
    scope: Scope
    target: str
    updated_at: datetime
    updated_by: str


class RunReport(BaseModel):
    """What a run did (or, dry, would do); the counts of what it did only when it was not dry."""

    id: uuid.UUID
    dry_run: bool
    would_expire_results: int
    would_release_captures: int
    groups: dict[str, Any]
    note: str
    expired_results: int | None = None
    released_captures: int | None = None
    images: int | None = None


class RetentionRun(BaseModel):
    id: uuid.UUID
    started_at: datetime
    finished_at: datetime | None
    dry_run: bool
    started_by: str
    report: dict[str, Any]


def _check_target(scope: str, target: str) -> None:
    if scope == "all" and target != "*":
        raise Problem(422, "The installation-wide policy's target is `*`.", field="path:target")
    if scope == "line" and not re.match(LINE_ID, target):
        raise Problem(422, "Not a line id.", field="path:target")
    if scope == "program":
        try:
            uuid.UUID(target)
        except ValueError:
            raise Problem(
                422, "A program policy's target is the program id.", field="path:target"
            ) from None


@router.get(
    "/policies",
    response_model=list[Policy],
    summary="Retention policies (per installation, line or program)",
)
async def list_policies(session: Session, _: CanManage) -> list[Policy]:
    return [Policy.model_validate(dict(row)) for row in await repository.policies(session)]


@router.put(
    "/policies/{scope}/{target}",
    summary="Set how long results and captured images are kept for a line, a program or all",
    description=(
        "Where several policies apply, the longest age wins. A missing age says nothing: "
        "kept as long as another policy or forever. Master images and images a program "
        "revision uses are never removed."
    ),
    response_model=Policy,
)
async def put_policy(
    scope: Scope,
    target: Target,
    body: PolicyBody,
    request: Request,
    session: Session,
    principal: CanManage,
) -> Policy:
    _check_target(scope, target)
    row = await service.put_policy(
        session,
        principal,
        scope,
        target,
        results_max_age_days=body.results_max_age_days,
        captures_max_age_days=body.captures_max_age_days,
        request_id=request_id(request),
    )
    return Policy.model_validate(dict(row))


@router.delete("/policies/{scope}/{target}", status_code=204, summary="Remove a policy")
async def delete_policy(
    scope: Scope, target: Target, request: Request, session: Session, principal: CanManage
) -> Response:
    await service.delete_policy(session, principal, scope, target, request_id=request_id(request))
    return Response(status_code=204)


@router.post(
    "/runs",
    response_model=RunReport,
    response_model_exclude_unset=True,
    summary="Apply the policies now; a dry run (the default) only reports what would go",
)
async def run_retention(
    request: Request,
    sessions: Sessions,
    leases: HeldLeases,
    principal: CanManage,
    dry_run: bool = True,
) -> dict[str, Any]:
    if not dry_run:
        return await service.apply(leases, sessions, principal, request_id=request_id(request))
    return await service.run(sessions, principal, dry_run=True, request_id=request_id(request))


@router.get(
    "/runs", response_model=list[RetentionRun], summary="Recent retention runs and what they did"
)
async def list_runs(
    session: Session, _: CanManage, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[dict[str, Any]]:
    return [dict(row) for row in await repository.runs(session, limit)]
