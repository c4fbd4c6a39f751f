"""The results API's work: publishing a batch to the stream lines publish to, pages and
stats of what the ingest stored, and the live feed's events."""

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
import orjson
from fastapi.sse import format_sse_event
from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext
from nats.js.errors import Error as JetStreamError

from loupe_catalog import pagination
from loupe_catalog.results import repository
from loupe_catalog.results.live import CLOSED, Listener
from loupe_catalog.results.schemas import DefectGroup, DefectKey, DefectPareto
from loupe_catalog.results.stored import StoredNotices
from loupe_shared.contracts import subjects
from loupe_shared.contracts.results import InspectionResult, ResultBatch
from loupe_shared.kit.problems import Problem
from loupe_shared.kit.responses import dumps

# Results per message: a batch of up to 1,000 goes out as messages of this many, in parallel.
CHUNK = 250
LISTING = "results"
# The longest a first page waits for new results (`GET /api/results?wait=`), and the pause
# before a waiting reader reads again after a read its wake-up did not answer.
MAX_WAIT_S = 30.0
REREAD_PAUSE_S = 0.05
MAX_STATS_BUCKETS = 2000
# The defect Pareto's window: a day by default, a month at most (it reads every result in it).
DEFECT_WINDOW = timedelta(hours=24)
MAX_DEFECT_WINDOW = timedelta(days=31)
# What a reconnecting EventSource waits (ms).
RECONNECT_MS = 2000
# Results sent in one chunk at most, and the keep-alive comment sent after this long idle.
SEND_BATCH = 500
KEEPALIVE_S = 15.0
KEEPALIVE = b": ping\n\n"
# A resuming reader gets at most this many missed results from the feed itself, captured at
# most this long before the last one it saw.
MAX_MISSED = 1000
MISSED_WINDOW = timedelta(minutes=10)


async def record(js: JetStreamContext, namespace: str, batch: ResultBatch) -> tuple[int, int]:
    """Publish the batch and wait for JetStream to acknowledge every message; the results
    accepted and the messages sent. A message's id is its results' ids, so sending the same
    batch again is deduplicated by the stream, and by the ingest after the stream's window."""
    chunks = [batch.results[i : i + CHUNK] for i in range(0, len(batch.results), CHUNK)]

    async def send(chunk: list[InspectionResult]) -> None:
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
    return len(batch.results), len(chunks)


async def list_page(
    pool: asyncpg.Pool,
    *,
    line_id: str | None,
    program_id: uuid.UUID | None,
    verdict: str | None,
    defect_kind: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
    wait_s: float = 0.0,
    stored: StoredNotices | None = None,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of results, newest first, as stored, and the cursor of the next. With `wait_s`
    (a first page only), an empty page waits up to that long for matching results to be
    stored (woken by `stored`), so a reader following new results asks again at once
    instead of polling; it stops waiting once `gone()` says the reader went away."""
    if wait_s and cursor:
        raise Problem(
            422,
            "query:wait: waits for new results on a first page; a cursor's page goes back in "
            "time, where none arrive.",
            errors=[{"field": "query:wait", "message": "not with a cursor"}],
        )
    after = pagination.decode_time(cursor, LISTING) if cursor else None

    async def read() -> tuple[list[asyncpg.Record], tuple[int, int]]:
        # The generation is read before the query: results stored while it runs wake the
        # wait that follows at once.
        generation = stored.generation(line_id) if stored is not None else (0, 0)
        found = await repository.page(
            pool,
            line_id=line_id,
            program_id=program_id,
            verdict=verdict,
            defect_kind=defect_kind,
            since=since,
            until=until,
            after=after,
            limit=limit + 1,
        )
        return found, generation

    deadline = time.monotonic() + wait_s
    rows, generation = await read()
    if not rows and stored is not None and wait_s > 0:
        with stored.waiting.track_inprogress():
            while not stored.closing:
                left = deadline - time.monotonic()
                if left <= 0 or (gone is not None and await gone()):
                    break
                # Woken by a notice, or recheck_s passed (read too: a notice may be lost).
                await stored.wait_after(line_id, generation, left)
                rows, generation = await read()
                if rows:
                    break
                # Woken, yet nothing matched (results of this line, not of this filter): the
                # next read waits a little, so a filter that matches little costs few reads.
                await asyncio.sleep(min(REREAD_PAUSE_S, max(0.0, deadline - time.monotonic())))
    page, next_cursor = pagination.page(
        rows,
        limit,
        lambda last: pagination.encode(
            LISTING, last["captured_at"].isoformat(), str(last["result_id"])
        ),
    )
    return [repository.as_dict(row) for row in page], next_cursor


async def stats(
    pool: asyncpg.Pool,
    *,
    bucket: Literal["hour", "day"],
    since: datetime | None,
    until: datetime | None,
    line_id: str | None,
    program_id: uuid.UUID | None,
) -> dict[str, Any]:
    """Counts and pass rate per bucket, line and program; the range defaults to the last day
    (hours) or month (days) and holds at most 2,000 buckets."""
    until = until or datetime.now(UTC)
    since = since or until - (timedelta(hours=24) if bucket == "hour" else timedelta(days=30))
    if since >= until:
        raise Problem(
            422,
            "query:since: must be before until.",
            errors=[{"field": "query:since", "message": "must be before until"}],
        )
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    if (until - since) / step > MAX_STATS_BUCKETS:
        raise Problem(
            422,
            f"query:since: that is more than 2,000 {bucket}s; narrow the range or count per day.",
            errors=[{"field": "query:since", "message": f"more than 2,000 {bucket}s"}],
        )
    rows = await repository.stats(
        pool, bucket=bucket, since=since, until=until, line_id=line_id, program_id=program_id
    )
    return {
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


def _since_before_until(since: datetime, until: datetime) -> None:
    if since >= until:
        raise Problem(
            422,
            "query:since: must be before until.",
            errors=[{"field": "query:since", "message": "must be before until"}],
        )


async def defects(
    pool: asyncpg.Pool,
    *,
    by: DefectKey,
    since: datetime | None,
    until: datetime | None,
    line_id: str | None,
    program_id: uuid.UUID | None,
    limit: int,
) -> DefectPareto:
    """The window's defects counted by `by`, largest group first, each with its share and
    the cumulative share down to it; the window defaults to the day before `until` (now) and
    is at most 31 days long."""
    until = until or datetime.now(UTC)
    since = since or until - DEFECT_WINDOW
    _since_before_until(since, until)
    if until - since > MAX_DEFECT_WINDOW:
        raise Problem(
            422,
            "query:since: the window is longer than 31 days; narrow it.",
            errors=[{"field": "query:since", "message": "window longer than 31 days"}],
        )
    rows, counts = await repository.defects(
        pool,
        by=by,
        since=since,
        until=until,
        line_id=line_id,
        program_id=program_id,
        limit=limit,
    )
    total = int(rows[0]["total"]) if rows else 0
    items: list[DefectGroup] = []
    running = 0
    for row in rows:
        running += row["defects"]
        items.append(
            DefectGroup(
                key=row["key"],
                defects=row["defects"],
                results=row["results"],
                share=round(row["defects"] / total, 6),
                cumulative_share=round(running / total, 6),
            )
        )
    return DefectPareto(
        by=by,
        since=since,
        until=until,
        results=counts["total"],
        failing_results=counts["fail"],
        defects=total,
        groups=int(rows[0]["groups"]) if rows else 0,
        items=items,
    )


async def missed(
    pool: asyncpg.Pool, last_event_id: str | None, line_id: str | None, verdict: str | None
) -> tuple[list[dict[str, Any]], bool]:
    """What a reader resuming after `last_event_id` (the `result_id` of the last result it
    got) missed, as stored, oldest capture first; and whether there was more than
    `MAX_MISSED` (the reader reads the rest from the paged list). Nothing for an id that is
    not a stored result's."""
    try:
        last_id = uuid.UUID((last_event_id or "").strip())
    except ValueError:
        return [], False
    rows = await repository.stored_after(
        pool,
        last_id,
        line_id=line_id,
        verdict=verdict,
        window=MISSED_WINDOW,
        limit=MAX_MISSED + 1,
    )
    if not rows:
        return [], False
    return [repository.as_dict(row) for row in rows[:MAX_MISSED]], len(rows) > MAX_MISSED


def _event(event: str | None = None, data: str | None = None, **fields: Any) -> bytes:
    return format_sse_event(event=event, data_str=data, **fields)


def _result_event(result: dict[str, Any]) -> bytes:
    return _event("result", dumps(result).decode(), id=str(result.get("result_id", "")))


async def live_events(
    listener: Listener,
    backlog: list[dict[str, Any]],
    more: bool,
    keepalive_s: float = KEEPALIVE_S,
) -> AsyncIterator[bytes]:
    """The live feed's bytes for one listener: a first `connected` comment with the
    reconnection delay; the `backlog` a resuming reader missed (then `event: gap` when there
    was more than it holds: the reader reads the paged list); then each result as it is
    recorded, `event: result` with its `result_id` as the event id, preceded by
    `event: dropped` when a slow reader missed some; a keep-alive comment while nothing comes.
    A result already sent from the backlog is not sent again.

    What the queue holds when the reader is ready is sent as one chunk: one write and one
    gateway flush per batch rather than per result, so a feed of thousands of results a
    second costs the service a few writes a second per reader."""
    yield _event(comment="connected", retry=RECONNECT_MS)
    sent: set[str] = set()
    for start in range(0, len(backlog), SEND_BATCH):
        chunk = backlog[start : start + SEND_BATCH]
        sent.update(str(result.get("result_id", "")) for result in chunk)
        yield b"".join(_result_event(result) for result in chunk)
    if more:
        last = backlog[-1] if backlog else {}
        yield _event("gap", dumps({"after": last.get("captured_at")}).decode())
    reported = 0
    queue = listener.queue
    while not listener.closed:
        if queue.empty():
            try:
                async with asyncio.timeout(keepalive_s):
                    first = await queue.get()
            except TimeoutError:
                yield KEEPALIVE
                continue
        else:
            first = queue.get_nowait()
        # No await from here to the yield: nothing is offered (or dropped) meanwhile, so every
        # drop counted so far was of results older than this batch.
        batch = [first]
        while len(batch) < SEND_BATCH and not queue.empty():
            batch.append(queue.get_nowait())
        parts: list[bytes] = []
        if listener.dropped > reported:
            dropped, reported = listener.dropped - reported, listener.dropped
            parts.append(_event("dropped", orjson.dumps({"count": dropped}).decode()))
        for result in batch:
            if result is CLOSED or (sent and str(result.get("result_id", "")) in sent):
                continue
            parts.append(_result_event(result))
        if parts:
            yield b"".join(parts)
