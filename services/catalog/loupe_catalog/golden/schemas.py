import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from loupe_shared.contracts.bounds import NulFreeStr

Label = Literal["good", "bad"]


class GoldenImageWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Label
    note: Annotated[NulFreeStr, Field(max_length=500)] = ""


class GoldenAttachment(BaseModel):
    """A capture attached to a golden set, as the attaching request set it."""

    capture_sha256: str
    label: Label
    note: str


class GoldenImage(BaseModel):
    capture_sha256: str
    label: Label
    note: str
    added_at: datetime
    added_by: str


class GoldenSet(BaseModel):
    program_id: uuid.UUID
    revision: int
    items: list[GoldenImage]
    good: int
    bad: int


class Confusion(BaseModel):
    """Labels against verdicts: a good part that passed is a true accept, a good part that
    failed a false reject, a bad part that failed a true reject, a bad part that passed a
    false accept (an escape). Images the workers could not inspect are errors."""

    true_accepts: int = 0
    false_rejects: int = 0
    true_rejects: int = 0
    false_accepts: int = 0
    errors: int = 0


class ImageVerdict(BaseModel):
    capture_sha256: str
    label: Label
    verdict: Literal["pass", "fail", "error"]
    correct: bool
    reason: str | None = None
    defects: int = 0
    score: float | None = None
    processing_ms: float | None = None


class GoldenRun(BaseModel):
    id: uuid.UUID
    program_id: uuid.UUID
    revision: int
    data_checksum: str
    started_at: datetime
    finished_at: datetime
    started_by: str
    confusion: Confusion
    # Every image judged as labelled, none in error: the revision may be activated.
    passed: bool
    images: list[ImageVerdict]


class GoldenRunPage(BaseModel):
    items: list[GoldenRun]
