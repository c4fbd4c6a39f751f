from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from loupe_images.images.schemas import IntegrityReport, ScrubStarted
from loupe_images.state import State
from loupe_shared.kit.auth import Permission, Principal, require
from loupe_shared.kit.problems import Problem

router = APIRouter(prefix="/api/integrity", tags=["integrity"])
CURSOR_CHARACTERS = frozenset("0123456789abcdef-thumbnailob")


@router.get(
    "/report",
    summary="The scrub's progress and what it found (corrupt or missing objects)",
    dependencies=[Depends(require(Permission.INTEGRITY_READ))],
    # Before the first pass the scrub's state has only `state` and `running_here`.
    response_model_exclude_unset=True,
)
async def integrity_report(
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    open_only: bool = False,
) -> IntegrityReport:
    if cursor is not None and not set(cursor) <= CURSOR_CHARACTERS:
        raise Problem(400, "The cursor is not one this API gave out.", field="query:cursor")
    scrubber = state.scrubber
    findings, more = await scrubber.findings(limit, cursor)
    if open_only:
        findings = [f for f in findings if f.get("resolved_at") is None]
    return IntegrityReport.model_validate(
        {
            "scrub": await scrubber.state(),
            "findings": findings,
            "next_cursor": findings[-1]["id"] if more and findings else None,
        }
    )


@router.post(
    "/scrub",
    summary="Start a scrub pass now (answers at once; follow it in the report)",
    status_code=202,
    response_model_exclude_unset=True,
)
async def start_scrub(
    response: Response,
    state: State,
    _: Annotated[Principal, Depends(require(Permission.STORAGE_MANAGE))],
) -> ScrubStarted:
    scrubber = state.scrubber
    started = await scrubber.start()
    response.headers["Location"] = "/api/integrity/report"
    return ScrubStarted.model_validate({"started": started, "scrub": await scrubber.state()})
