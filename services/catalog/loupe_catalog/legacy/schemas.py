import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Outcome = Literal["imported", "revised", "already_migrated", "duplicate", "invalid", "failed"]
OUTCOMES: tuple[Outcome, ...] = (
    "imported",
    "revised",
    "already_migrated",
    "duplicate",
    "invalid",
    "failed",
)


class ItemReport(BaseModel):
    """One program of the export. In a dry run, `imported` and `revised` say what would be
    done."""

    position: int = Field(description="index in the export's program array")
    legacy_id: str | None
    name: str | None
    outcome: Outcome
    reason_code: str | None = Field(
        default=None,
        description="bad_entry, bad_base64, not_an_image, unsupported_image_type, "
        "image_too_large, config_not_upgradable, name_clash, archived_in_loupe, "
        "duplicate_legacy_id, upload_refused, save_refused, verification_failed",
    )
    reason: str | None = None
    warnings: list[str] = Field(default_factory=list)
    program_id: uuid.UUID | None = None
    revision: int | None = None
    master_image_sha256: str | None = None
    image_bytes: int | None = None
    image_sent: bool | None = Field(
        default=None, description="false when the images service had the bytes already"
    )
    data_checksum: str | None = None
    config_from_version: int | None = None


class Report(BaseModel):
    run_id: uuid.UUID | None = Field(description="the recorded run (None for a dry run)")
    dry_run: bool
    input_sha256: str
    input_shape: str
    totals: dict[str, int]
    items: list[ItemReport]


class RunSummary(BaseModel):
    id: uuid.UUID
    source: str
    started_at: datetime
    finished_at: datetime | None
    started_by: str
    input_sha256: str
    input_shape: str
    totals: dict[str, int]
    rolled_back_at: datetime | None
    rolled_back_by: str | None


class Run(RunSummary):
    request_id: str | None
    rollback: dict[str, Any] | None
    items: list[ItemReport]


class RunPage(BaseModel):
    items: list[RunSummary]
    next_cursor: str | None


class RollbackItem(BaseModel):
    legacy_id: str | None
    program_id: uuid.UUID
    action: Literal["archived", "reverted", "skipped"]
    reason: str | None = None


class RollbackReport(BaseModel):
    run_id: uuid.UUID
    rolled_back_at: datetime
    items: list[RollbackItem]
