"""What the results API answers. The hot read paths answer their rows as they are stored
(written by orjson, not validated again: a row stored before a bound existed is still shown);
these models are what those answers look like, for the OpenAPI document and its clients."""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from loupe_shared.contracts.results import InspectionResult


class Recorded(BaseModel):
    accepted: int
    messages: int


class StoredResult(InspectionResult):
    """A result as stored: what was published (unknown fields included) and when the ingest
    stored it."""

    recorded_at: datetime


class ResultPage(BaseModel):
    items: list[StoredResult]
    next_cursor: str | None


class StatsRow(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    bucket: datetime
    line_id: str
    program_id: uuid.UUID | None
    total: int
    # "pass" is a Python keyword: the field's name in JSON is the verdict's.
    passed: int = Field(alias="pass")
    fail: int
    error: int
    pass_rate: float | None


class ResultStats(BaseModel):
    bucket: Literal["hour", "day"]
    since: datetime
    until: datetime
    items: list[StatsRow]


class DroppedNotice(BaseModel):
    """`event: dropped`: how many results a slow reader of the live feed missed."""

    count: int


DefectKey = Literal["kind", "tool", "line", "program"]


class DefectGroup(BaseModel):
    key: str | None = Field(description="the kind, tool id, line id or program id; null: none")
    defects: int
    results: int = Field(description="results with at least one defect in this group")
    share: float = Field(description="of all the window's defects")
    cumulative_share: float = Field(description="this group's and every larger one's")


class DefectPareto(BaseModel):
    """Defects in a window, largest group first (a Pareto chart's bars and its
    cumulative line)."""

    by: DefectKey
    since: datetime
    until: datetime
    results: int = Field(description="results captured in the window (after the filters)")
    failing_results: int
    defects: int = Field(description="defects in the window, in every group")
    groups: int = Field(description="groups in the window; more than `items` when cut")
    items: list[DefectGroup]
