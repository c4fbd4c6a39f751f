"""What inspection workers add to the result contract, and the evaluation request the
catalog sends them to run a program revision over its golden set.

A worker's result is an `InspectionResult` (the same contract as a line's), with these extra
fields, which the catalog stores with the result like any unknown field."""

import uuid

from pydantic import BaseModel, ConfigDict, Field

from loupe_shared.contracts.bounds import PositiveInt32
from loupe_shared.contracts.results import SHA256, InspectionResult


class ToolSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    tool_id: str
    type: str
    passed: bool
    # What the tool measured and its limit: defects and max_defects (difference), changed
    # pixels and min_defect_area (presence), grey-level change and threshold (brightness).
    measured: float
    limit: float


class AlignmentSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    method: str
    shift_px: float
    rotation_deg: float


class InspectedResult(InspectionResult):
    """A result made by an inspection worker for an `inspection.requested` message."""

    request_id: uuid.UUID | None = None
    inspected_by: str = Field(default="", max_length=200)
    overlay_sha256: str | None = Field(default=None, pattern=SHA256)
    tools: list[ToolSummary] = Field(default_factory=list)
    alignment: AlignmentSummary | None = None


class EvaluationRequest(BaseModel):
    """`rpc.inspect.evaluate`: inspect one stored capture with one revision and answer the
    result (nothing is published). Answered by any worker (a queue group)."""

    model_config = ConfigDict(extra="forbid")

    program_id: uuid.UUID
    program_revision: PositiveInt32
    capture_sha256: str = Field(pattern=SHA256)


class EvaluationReply(BaseModel):
    result: InspectedResult | None = None
    # Set when the worker could not answer (a dependency down); the caller may ask again.
    error: str | None = None
