from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loupe_backup.backups.manifest import Include
from loupe_backup.backups.records import now
from loupe_backup.backups.schemas import IncludeIn
from loupe_backup.schedules.cron import Cron
from loupe_backup.schedules.retention import Retention
from loupe_shared.contracts.bounds import NulFreeStr


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[NulFreeStr, Field(min_length=1, max_length=100)]
    cron: Annotated[
        NulFreeStr,
        Field(max_length=100, description="five fields, UTC: minute hour day month weekday"),
    ]
    kind: Literal["full", "incremental"] = "incremental"
    include: IncludeIn = Field(default_factory=IncludeIn)
    retention: Retention = Field(default_factory=Retention)
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        # CronError is a ValueError: a 422 naming the field. An expression that parses but
        # never fires within the horizon (`0 0 30 2 *`) is refused here too.
        Cron.parse(value).next_after(now())
        return value


class Schedule(BaseModel):
    id: str
    name: str
    cron: str
    kind: Literal["full", "incremental"]
    include: Include
    retention: Retention
    enabled: bool
    created_by: str
    created_at: datetime = Field(default_factory=now)
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_backup_id: str | None = None
    last_status: str | None = None
    last_error: str | None = None
    failures: int = 0
