import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from loupe_catalog.results import repository, service
from loupe_catalog.results.live import Listener
from loupe_catalog.results.schemas import (
    DefectKey,
    DefectPareto,
    Recorded,
    ResultPage,
    ResultStats,
    StoredResult,
)
from loupe_catalog.state import Catalog
from loupe_shared.contracts.bounds import Timestamp
from loupe_shared.contracts.results import LINE_ID, ResultBatch, Text100
from loupe_shared.kit.auth import Permission, Principal, require
from loupe_shared.kit.db import ReadPool
from loupe_shared.kit.problems import Problem
from loupe_shared.kit.responses import FastJSONResponse

router = APIRouter(prefix="/api/results", tags=["results"])
CanRead = Annotated[Principal, Depends(require(Permission.RESULTS_READ))]
CanWrite = Annotated[Principal, Depends(require(Permission.RESULTS_WRITE))]
LineFilter = Annotated[str | None, Query(pattern=LINE_ID)]
DefectKindFilter = Annotated[
    Text100 | None,
    Query(min_length=1, description="only results with at least one defect of this kind"),
]
VerdictFilter = Literal["pass", "fail", "error"] | None


@router.post(
    "",
    summary="Record a batch of up to 1,000 results (for lines that cannot speak NATS)",
    status_code=202,
    response_model=Recorded,
    description=(
        "Published to the same durable stream lines publish to, and answered only after "
        "JetStream acknowledged every result. Sending the same batch again is harmless: "
        "results are stored once per `result_id`."
    ),
)
async def record_results(batch: ResultBatch, catalog: Catalog, _: CanWrite) -> JSONResponse:
    accepted, messages = await service.record(catalog.js, catalog.settings.namespace, batch)
    return JSONResponse({"accepted": accepted, "messages": messages}, 202)


@router.get(
    "",
    summary="Results, newest first, with filters and cursor pagination",
    response_model=ResultPage,
)
async def list_results(
    request: Request,
    pool: ReadPool,
    catalog: Catalog,
    _: CanRead,
    line_id: LineFilter = None,
    program_id: uuid.UUID | None = None,
    verdict: VerdictFilter = None,
    defect_kind: DefectKindFilter = None,
    since: Annotated[Timestamp | None, Query(description="captured at or after")] = None,
    until: Annotated[Timestamp | None, Query(description="captured before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=service.MAX_WAIT_S,
            allow_inf_nan=False,
            description=(
                "seconds (up to 30) a first page that would be empty waits for matching "
                "results to be stored; it is answered as soon as they are. A reader following "
                "new results asks with `since` just after the newest it has and `wait`, and "
                "asks again as soon as it is answered"
            ),
        ),
    ] = 0,
) -> FastJSONResponse:
    items, next_cursor = await service.list_page(
        pool,
        line_id=line_id,
        program_id=program_id,
        verdict=verdict,
        defect_kind=defect_kind,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
        wait_s=wait,
        stored=catalog.stored,
        gone=request.is_disconnected,
    )
    return FastJSONResponse({"items": items, "next_cursor": next_cursor})


@router.get(
    "/stats",
    summary="Counts and pass rate per line and program, per hour or day",
    response_model=ResultStats,
)
async def result_stats(
    pool: ReadPool,
    _: CanRead,
    bucket: Literal["hour", "day"] = "hour",
    since: Annotated[Timestamp | None, Query(description="default: a day or a month back")] = None,
    until: Annotated[Timestamp | None, Query(description="default: now")] = None,
    line_id: LineFilter = None,
    program_id: uuid.UUID | None = None,
) -> FastJSONResponse:
    answer = await service.stats(
        pool, bucket=bucket, since=since, until=until, line_id=line_id, program_id=program_id
    )
    return FastJSONResponse(answer)


@router.get(
    "/defects",
    summary="Defects by kind, tool, line or program over a window, largest first (Pareto)",
    response_model=DefectPareto,
    description=(
        "Counts the `defects` of the results captured in `[since, until)` (a day before "
        "`until` by default, 31 days at most): per group the defects, the results having one, "
        "the share of all the window's defects and the cumulative share down to that group. "
        "`groups` says how many there were when `limit` cut the list."
    ),
)
async def defect_pareto(
    pool: ReadPool,
    _: CanRead,
    by: DefectKey = "kind",
    since: Annotated[Timestamp | None, Query(description="default: a day before until")] = None,
    until: Annotated[Timestamp | None, Query(description="default: now")] = None,
    line_id: LineFilter = None,
    program_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DefectPareto:
    return await service.defects(
        pool,
        by=by,
        since=since,
        until=until,
        line_id=line_id,
        program_id=program_id,
        limit=limit,
    )


# What the stream's OpenAPI says (as FastAPI's own SSE responses say it).
_EVENT_STREAM = {
    "text/event-stream": {
        "itemSchema": {
            "type": "object",
            "properties": {
                "data": {"type": "string"},
                "event": {"type": "string"},
                "id": {"type": "string"},
                "retry": {"type": "integer", "minimum": 0},
            },
        }
    }
}


@dataclass(frozen=True)
class _Place:
    listener: Listener
    backlog: list[dict[str, Any]]
    more: bool


async def _place(
    catalog: Catalog,
    pool: ReadPool,
    _: CanRead,
    line_id: LineFilter = None,
    verdict: VerdictFilter = None,
    last_event_id: Annotated[
        str | None,
        Header(
            max_length=100,
            description="the id of the last event read: what was stored since is sent first",
        ),
    ] = None,
) -> AsyncIterator[_Place]:
    """A place on the live feed for as long as the stream is open (a yield dependency's exit
    runs after the answer has been sent), joined before the missed results are read so none
    falls between the two."""
    feed = catalog.live_feed
    listener = await feed.join(line_id, verdict)
    if listener is None:
        if feed.closing:
            raise Problem(
                503,
                "This catalog process is shutting down; try again.",
                headers={"Retry-After": "1"},
            )
        raise Problem(
            503, "Too many live feeds are open; try again later.", headers={"Retry-After": "10"}
        )
    try:
        backlog, more = await service.missed(pool, last_event_id, line_id, verdict)
        yield _Place(listener, backlog, more)
    finally:
        await feed.leave(listener)


@router.get(
    "/stream",
    summary="A live feed of results as they are recorded (server-sent events)",
    description=(
        "`event: result` carries a stored result's JSON with its `result_id` as the event id; "
        "`event: dropped` says how many results a reader too slow to keep up missed. A reader "
        "that sends `Last-Event-ID` first gets the results stored after that one (up to 1,000, "
        "captured at most 10 min before it; `event: gap` when there were more: read the paged "
        "list). A comment keeps the connection alive every 15 s."
    ),
    response_class=StreamingResponse,
    responses={200: {"description": "Successful Response", "content": _EVENT_STREAM}},
)
async def result_stream(place: Annotated[_Place, Depends(_place)]) -> StreamingResponse:
    # Formatted here rather than by FastAPI's per-event SSE machinery: batches of results are
    # written at once (see `service.live_events`).
    return StreamingResponse(
        service.live_events(place.listener, place.backlog, place.more),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{result_id}", summary="One result", response_model=StoredResult)
async def get_result(result_id: uuid.UUID, pool: ReadPool, _: CanRead) -> FastJSONResponse:
    row = await repository.get(pool, result_id)
    if row is None:
        raise Problem(404, f"No result {result_id}.")
    return FastJSONResponse(repository.as_dict(row))
