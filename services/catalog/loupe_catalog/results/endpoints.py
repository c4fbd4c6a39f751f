import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError

from loupe_catalog import pagination
from loupe_catalog.results import repository
from loupe_catalog.results.live import LiveFeed
from loupe_shared.contracts import subjects
from loupe_shared.contracts.bounds import Timestamp
from loupe_shared.contracts.results import LINE_ID, ResultBatch
from loupe_shared.kit.auth import Permission, Principal, require
from loupe_shared.kit.db import ReadPool
from loupe_shared.kit.problems import Problem
from loupe_shared.kit.responses import FastJSONResponse

router = APIRouter(prefix="/api/results", tags=["results"])
CanRead = Annotated[Principal, Depends(require(Permission.RESULTS_READ))]
CanWrite = Annotated[Principal, Depends(require(Permission.RESULTS_WRITE))]
LineFilter = Annotated[str | None, Query(pattern=LINE_ID)]
VerdictFilter = Literal["pass", "fail", "error"] | None
CHUNK = 250
HEARTBEAT_S = 15.0
LISTING = "results"


@router.post(
    "",
    summary="Record a batch of up to 1,000 results (for lines that cannot speak NATS)",
    status_code=202,
    description=(
        "Published to the same durable stream lines publish to, and answered only after "
        "JetStream acknowledged every result. Sending the same batch again is harmless: "
        "results are stored once per `result_id`."
    ),
)
async def record_results(batch: ResultBatch, request: Request, _: CanWrite) -> JSONResponse:
    js = request.app.state.js
    namespace = request.app.state.settings.namespace
    chunks = [batch.results[i : i + CHUNK] for i in range(0, len(batch.results), CHUNK)]

    async def send(chunk: list[Any]) -> None:
        ids = ",".join(str(result.result_id) for result in chunk)
        body = ResultBatch(results=chunk).model_dump_json().encode()
        await js.publish(
            subjects.subject(subjects.RESULTS_RECORDED, namespace),
            body,
            timeout=10,
            headers={"Nats-Msg-Id": "http-" + hashlib.sha256(ids.encode()).hexdigest()},
        )

    try:
        await asyncio.gather(*(send(chunk) for chunk in chunks))
    except (NatsError, JetStreamError, TimeoutError) as exc:
        raise Problem(
            503,
            "The results could not be recorded (the message stream is unavailable); send the "
            "same batch again — results already recorded are not counted twice.",
            headers={"Retry-After": "2"},
            reason=str(exc)[:200],
        ) from None
    return JSONResponse({"accepted": len(batch.results), "messages": len(chunks)}, 202)


@router.get("", summary="Results, newest first, with filters and cursor pagination")
async def list_results(
    pool: ReadPool,
    _: CanRead,
    line_id: LineFilter = None,
    program_id: uuid.UUID | None = None,
    verdict: VerdictFilter = None,
    since: Annotated[Timestamp | None, Query(description="captured at or after")] = None,
    until: Annotated[Timestamp | None, Query(description="captured before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> FastJSONResponse:
    after = None
    if cursor:
        after = pagination.decode_time(cursor, LISTING)
    rows = await repository.page(
        pool,
        line_id=line_id,
        program_id=program_id,
        verdict=verdict,
        since=since,
        until=until,
        after=after,
        limit=limit + 1,
    )
    items = [repository.as_dict(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = pagination.encode(
            LISTING, last["captured_at"].isoformat(), str(last["result_id"])
        )
    return FastJSONResponse({"items": items, "next_cursor": next_cursor})


@router.get("/stats", summary="Counts and pass rate per line and program, per hour or day")
async def result_stats(
    pool: ReadPool,
    _: CanRead,
    bucket: Literal["hour", "day"] = "hour",
    since: Annotated[Timestamp | None, Query(description="default: a day or a month back")] = None,
    until: Annotated[Timestamp | None, Query(description="default: now")] = None,
    line_id: LineFilter = None,
    program_id: uuid.UUID | None = None,
) -> FastJSONResponse:
    until = until or datetime.now(UTC)
    span = timedelta(hours=24) if bucket == "hour" else timedelta(days=30)
    since = since or until - span
    if since >= until:
        raise Problem(
            422,
            "query:since: must be before until.",
            errors=[{"field": "query:since", "message": "must be before until"}],
        )
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    if (until - since) / step > 2000:
        raise Problem(
            422,
            f"query:since: that is more than 2,000 {bucket}s; narrow the range or count per day.",
            errors=[{"field": "query:since", "message": f"more than 2,000 {bucket}s"}],
        )
    rows = await repository.stats(
        pool, bucket=bucket, since=since, until=until, line_id=line_id, program_id=program_id
    )
    return FastJSONResponse(
        {
            "bucket": bucket,
            "since": since,
            "until": until,
            "items": [
                {
                    **dict(row),
                    "pass_rate": round(row["pass"] / row["total"], 6) if row["total"] else None,
                }
                for row in rows
            ],
        }
    )


@router.get(
    "/stream",
    summary="A live feed of results as they are recorded (server-sent events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def result_stream(
    request: Request,
    _: CanRead,
    line_id: LineFilter = None,
    verdict: VerdictFilter = None,
) -> StreamingResponse:
    feed: LiveFeed = request.app.state.live_feed
    listener = await feed.join(line_id, verdict)
    if listener is None:
        raise Problem(
            503, "Too many live feeds are open; try again later.", headers={"Retry-After": "10"}
        )

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n: connected\n\n"
            reported = 0
            while not await request.is_disconnected():
                try:
                    result = await asyncio.wait_for(listener.queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if listener.dropped > reported:
                    dropped = listener.dropped - reported
                    reported = listener.dropped
                    yield b"event: dropped\ndata: " + orjson.dumps({"count": dropped}) + b"\n\n"
                yield (
                    b"id: "
                    + str(result.get("result_id", "")).encode()
                    + b"\nevent: result\ndata: "
                    + orjson.dumps(result)
                    + b"\n\n"
                )
        finally:
            await feed.leave(listener)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{result_id}", summary="One result")
async def get_result(result_id: uuid.UUID, pool: ReadPool, _: CanRead) -> FastJSONResponse:
    row = await repository.get(pool, result_id)
    if row is None:
        raise Problem(404, f"No result {result_id}.")
    return FastJSONResponse(repository.as_dict(row))
