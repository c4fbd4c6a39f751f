from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from loupe_images.images.scrub import Scrubber
from loupe_shared.kit.auth import Permission, Principal, require
from loupe_shared.kit.problems import Problem

router = APIRouter(prefix="/api/integrity", tags=["integrity"])


@router.get(
    "/report",
    summary="The scrub's progress and what it found (corrupt or missing objects)",
    dependencies=[Depends(require(Permission.INTEGRITY_READ))],
)
async def integrity_report(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    open_only: bool = False,
) -> dict[str, Any]:
    if cursor is not None and not all(c in "0123456789abcdef-thumbnailob" for c in cursor):
        raise Problem(400, "The cursor is not one this API gave out.", field="query:cursor")
    scrubber: Scrubber = request.app.state.scrubber
    findings, more = await scrubber.findings(limit, cursor)
    if open_only:
        findings = [f for f in findings if f.get("resolved_at") is None]
    return {
        "scrub": await scrubber.state(),
        "findings": findings,
        "next_cursor": findings[-1]["id"] if more and findings else None,
    }


@router.post(
    "/scrub",
    summary="Start a scrub pass now (answers at once; follow it in the report)",
    status_code=202,
)
async def start_scrub(
    request: Request, _: Annotated[Principal, Depends(require(Permission.STORAGE_MANAGE))]
) -> JSONResponse:
    scrubber: Scrubber = request.app.state.scrubber
    started = scrubber.start()
    return JSONResponse(
        {"started": started, "scrub": await scrubber.state()},
        status_code=202,
        headers={"Location": "/api/integrity/report"},
    )
