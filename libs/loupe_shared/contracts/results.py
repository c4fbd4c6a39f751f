"""The inspection result contract, version 1 — what every line and inspection worker
publishes, modelled on the OPC UA Machine Vision result event.

On the wire a message on `results.recorded` is a `ResultBatch` (one or more results of one
publisher), with a batch id as `Nats-Msg-Id`; a result is identified by its `result_id`
(a UUID the line makes once, kept across retries; `new_result_id` makes a time-ordered one,
which the results table's primary key stores faster than a random one). Unknown fields —
from a newer publisher — are kept, not rejected, and stored with the result.

Every field is bounded by what storage holds and gives back (`bounds`): revisions are int32,
`captured_at` an aware timestamp in the window, numbers finite and round-tripping, text
NUL-free Unicode, and the unknown fields bounded JSON (`check_json` over each model's extras). The
catalog's hand-written ingest path (`loupe_catalog.results.rows`) mirrors these checks.
"""

import os
import time
import uuid
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loupe_shared.contracts.bounds import (
    FiniteFloat,
    NonNegativeFloat,
    NonNegativeInt32,
    PositiveInt32,
    StorableStr,
    Timestamp,
    check_json,
)

RESULT_SCHEMA_VERSION = 1


def new_result_id() -> uuid.UUID:
    """A time-ordered result id: a UUID version 7 (RFC 9562: 48 bits of Unix milliseconds,
    then 74 random bits). Ids made one after another sort together, so the results table's
    primary key adds each to the b-tree's newest pages instead of a random page each (the
    bare indexed COPY of such rows is about a third faster). Any UUID is still accepted."""
    milliseconds = time.time_ns() // 1_000_000 & (1 << 48) - 1
    random = int.from_bytes(os.urandom(10), "big")
    value = (
        milliseconds << 80
        | 0x7 << 76  # version
        | (random >> 62 & 0xFFF) << 64  # rand_a
        | 0b10 << 62  # the RFC's variant
        | random & (1 << 62) - 1  # rand_b
    )
    return uuid.UUID(int=value)


MAX_BATCH = 1000
MAX_DEFECTS = 1000
LINE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,99}$"
SHA256 = r"^[0-9a-f]{64}$"


Text100 = Annotated[StorableStr, Field(max_length=100)]
Text200 = Annotated[StorableStr, Field(max_length=200)]
Text2000 = Annotated[StorableStr, Field(max_length=2000)]


class _Open(BaseModel):
    """A model that keeps unknown fields, as bounded JSON."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _bounded_extras(self) -> Self:
        extra = self.__pydantic_extra__
        if extra:
            try:
                check_json(extra)
            except ValueError as exc:
                raise ValueError(f"unknown fields: {_culprit(extra)}{exc}") from None
        return self


def _culprit(extra: dict[str, object]) -> str:
    """The first unknown field that breaks the bounds on its own, to name it."""
    for key, value in extra.items():
        try:
            check_json({key: value})
        except ValueError:
            return f"{key!r} "
    return ""


class BoundingBox(_Open):
    x: NonNegativeInt32
    y: NonNegativeInt32
    width: NonNegativeInt32
    height: NonNegativeInt32


class Defect(_Open):
    kind: Text100 = "defect"
    bbox: BoundingBox
    area: NonNegativeFloat
    score: FiniteFloat | None = None
    tool_id: Text100 | None = None


class InspectionResult(_Open):
    schema_version: PositiveInt32 = RESULT_SCHEMA_VERSION
    result_id: uuid.UUID
    line_id: str = Field(pattern=LINE_ID)
    station: Text100 = ""
    program_id: uuid.UUID | None = None
    program_revision: PositiveInt32 | None = None
    part_id: Text200 = ""
    verdict: Literal["pass", "fail", "error"]
    score: FiniteFloat | None = None
    defects: list[Defect] = Field(default_factory=list, max_length=MAX_DEFECTS)
    processing_ms: NonNegativeFloat | None = None
    captured_at: Timestamp
    capture_sha256: str | None = Field(default=None, pattern=SHA256)
    is_simulated: bool = False
    # Why the verdict is `error` (an undecodable capture, a missing program, ...).
    reason: Text2000 | None = None


class ResultBatch(_Open):
    schema_version: PositiveInt32 = RESULT_SCHEMA_VERSION
    results: list[InspectionResult] = Field(min_length=1, max_length=MAX_BATCH)


class InspectionRequest(_Open):
    """`inspection.requested`: inspect a stored capture with a program's revision."""

    request_id: uuid.UUID
    line_id: str = Field(pattern=LINE_ID)
    station: Text100 = ""
    program_id: uuid.UUID
    # None: the program's current revision when the worker picks the request up.
    program_revision: PositiveInt32 | None = None
    capture_sha256: str = Field(pattern=SHA256)
    part_id: Text200 = ""
    captured_at: Timestamp
    is_simulated: bool = False
    # Also store an overlay image of the defects.
    overlay: bool = False


Verdict = Literal["pass", "fail", "error"]
