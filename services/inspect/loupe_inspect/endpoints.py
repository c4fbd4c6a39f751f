"""HTTP for the frontend (through the gateway at `/api/inspections`): ask for an inspection
like a line does, or try a revision on one stored capture and get the result at once."""

import time
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from loupe_inspect.inspector import result_id
from loupe_inspect.sources import Unavailable
from loupe_inspect.state import InspectState, state
from loupe_shared.contracts import subjects
from loupe_shared.contracts.bounds import NulFreeStr, PositiveInt32
from loupe_shared.contracts.inspect import InspectedResult
from loupe_shared.contracts.results import LINE_ID, SHA256, InspectionRequest
from loupe_shared.kit.auth import Permission, Principal, require
from loupe_shared.kit.problems import Problem

router = APIRouter(prefix="/api/inspections", tags=["inspections"])
CanRequest = Annotated[Principal, Depends(require(Permission.INSPECTIONS_REQUEST))]
Held = Annotated[InspectState, Depends(state)]


class InspectionAsk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    program_id: uuid.UUID
    program_revision: PositiveInt32 | None = None
    capture_sha256: str = Field(pattern=SHA256)
    line_id: str = Field(default="frontend", pattern=LINE_ID)
    station: Annotated[NulFreeStr, Field(max_length=100)] = ""
    part_id: Annotated[NulFreeStr, Field(max_length=200)] = ""
    overlay: bool = False
    # Kept across retries of the same ask (a second ask with it is not inspected again).
    request_id: uuid.UUID | None = None


class Accepted(BaseModel):
    request_id: uuid.UUID
    # The result's id: `GET /api/results/{result_id}` once the catalog has ingested it.
    result_id: uuid.UUID


def _request(ask: InspectionAsk, *, simulated: bool) -> InspectionRequest:
    return InspectionRequest(
        request_id=ask.request_id or uuid.uuid4(),
        line_id=ask.line_id,
        station=ask.station,
        program_id=ask.program_id,
        program_revision=ask.program_revision,
        capture_sha256=ask.capture_sha256,
        part_id=ask.part_id,
        captured_at=datetime.now(UTC),
        is_simulated=simulated,
        overlay=ask.overlay,
    )


@router.post("", status_code=202, summary="Queue an inspection (any worker takes it)")
async def request_inspection(ask: InspectionAsk, held: Held, _: CanRequest) -> Accepted:
    queued = _request(ask, simulated=False)
    try:
        await held.js.publish(
            subjects.subject(subjects.INSPECTION_REQUESTED, held.settings.namespace),
            queued.model_dump_json().encode(),
            headers={"Nats-Msg-Id": str(queued.request_id)},
            timeout=5,
        )
    except Exception:
        raise Problem(
            503, "The request could not be queued; nothing was queued. Try again shortly."
        ) from None
    return Accepted(request_id=queued.request_id, result_id=result_id(queued.request_id))


@router.post(
    "/try",
    summary="Inspect one stored capture now and answer the result (it is not recorded)",
    response_model_exclude_none=True,
)
async def try_inspection(ask: InspectionAsk, held: Held, _: CanRequest) -> InspectedResult:
    started = time.perf_counter()
    try:
        result = await held.inspector.handle(_request(ask, simulated=True))
    except Unavailable as exc:
        raise Problem(
            503, f"Cannot inspect right now: {exc}", headers={"Retry-After": "5"}
        ) from None
    if result.verdict == "error":
        raise Problem(422, f"The capture cannot be inspected: {result.reason}")
    result.processing_ms = round((time.perf_counter() - started) * 1000, 3)
    return result
