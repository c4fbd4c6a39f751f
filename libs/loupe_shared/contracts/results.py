"""The inspection result contract, version 1 — what every line and inspection worker
publishes, modelled on the OPC UA Machine Vision result event.

On the wire a message on `results.recorded` is a `ResultBatch` (one or more results of one
publisher), with a batch id as `Nats-Msg-Id`; a result is identified by its `result_id`
(a UUID the line makes once, kept across retries). Unknown fields — from a newer publisher —
are kept, not rejected, and stored with the result.
"""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

RESULT_SCHEMA_VERSION = 1
MAX_BATCH = 1000
MAX_DEFECTS = 1000
LINE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,99}$"
SHA256 = r"^[0-9a-f]{64}$"


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a time zone (e.g. 2026-01-31T12:00:00Z)")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class BoundingBox(BaseModel):
    model_config = ConfigDict(extra="allow")

    x: int = Field(ge=0)
    y: int = Field(ge=0)
    width: int = Field(ge=0)
    height: int = Field(ge=0)


class Defect(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: str = Field(default="defect", max_length=100)
    bbox: BoundingBox
    area: float = Field(ge=0)
    score: float | None = None
    tool_id: str | None = Field(default=None, max_length=100)


class InspectionResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_version: int = Field(default=RESULT_SCHEMA_VERSION, ge=1)
    result_id: uuid.UUID
    line_id: str = Field(pattern=LINE_ID)
    station: str = Field(default="", max_length=100)
    program_id: uuid.UUID | None = None
    program_revision: int | None = Field(default=None, ge=1)
    part_id: str = Field(default="", max_length=200)
    verdict: Literal["pass", "fail", "error"]
    score: float | None = None
    defects: list[Defect] = Field(default_factory=list, max_length=MAX_DEFECTS)
    processing_ms: float | None = Field(default=None, ge=0)
    captured_at: AwareDatetime
    capture_sha256: str | None = Field(default=None, pattern=SHA256)
    is_simulated: bool = False
    # Why the verdict is `error` (an undecodable capture, a missing program, ...).
    reason: str | None = Field(default=None, max_length=2000)


class ResultBatch(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_version: int = Field(default=RESULT_SCHEMA_VERSION, ge=1)
    results: list[InspectionResult] = Field(min_length=1, max_length=MAX_BATCH)


class InspectionRequest(BaseModel):
    """`inspection.requested`: inspect a stored capture with a program's revision."""

    model_config = ConfigDict(extra="allow")

    request_id: uuid.UUID
    line_id: str = Field(pattern=LINE_ID)
    station: str = Field(default="", max_length=100)
    program_id: uuid.UUID
    # None: the program's current revision when the worker picks the request up.
    program_revision: int | None = Field(default=None, ge=1)
    capture_sha256: str = Field(pattern=SHA256)
    part_id: str = Field(default="", max_length=200)
    captured_at: AwareDatetime
    is_simulated: bool = False
    # Also store an overlay image of the defects.
    overlay: bool = False


Verdict = Literal["pass", "fail", "error"]
