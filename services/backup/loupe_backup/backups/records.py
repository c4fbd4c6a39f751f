"""What the backup service knows about its backup sets and restores, kept as JSON documents in
the backup bucket (its own store): `sets/<id>/state.json`, `restores/<id>.json`."""

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from loupe_backup.backups.manifest import Include, Kind

Status = Literal["running", "completed", "failed"]
Compatibility = Literal["same", "migratable", "incompatible"]


def now() -> datetime:
    return datetime.now(UTC)


class Progress(BaseModel):
    percent: float = 0.0
    bytes_done: int = 0
    bytes_total: int = 0
    objects_done: int = 0
    objects_total: int = 0
    objects_copied: int = 0
    bytes_copied: int = 0
    phase: str = "starting"
    # Seconds spent in each finished phase (snapshot, objects, data, manifest).
    phase_seconds: dict[str, float] = Field(default_factory=dict)


class Verification(BaseModel):
    verified_at: datetime
    ok: bool
    checked_files: int
    checked_objects: int
    missing: list[str] = Field(default_factory=list)
    corrupt: list[str] = Field(default_factory=list)
    extra: list[str] = Field(default_factory=list)


class BackupRecord(BaseModel):
    id: str
    kind: Kind
    status: Status = "running"
    include: Include = Field(default_factory=Include)
    parent_id: str | None = None
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    finished_at: datetime | None = None
    created_by: str = ""
    schedule_id: str | None = None
    error: str | None = None
    progress: Progress = Field(default_factory=Progress)
    manifest_sha256: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    alembic_revisions: list[str] = Field(default_factory=list)
    app_version: str = ""
    format_version: int | None = None
    verification: Verification | None = None
    # The namespace of the installation whose backup service runs the job (its leases are
    # there); null for records written before it was kept, counted as this installation's.
    run_by_namespace: str | None = Field(default=None, max_length=100)

    def shown_status(self, stale_after_s: float) -> Status:
        """A running set whose process stopped updating it is failed, never completed."""
        if self.status == "running" and now() - self.updated_at > timedelta(seconds=stale_after_s):
            return "failed"
        return self.status


class RestoreRecord(BaseModel):
    id: str
    backup_id: str
    mode: Literal["replace", "empty"]
    status: Status = "running"
    phase: str = "starting"
    started_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    finished_at: datetime | None = None
    started_by: str = ""
    restore_point_id: str | None = None
    compatibility: Compatibility = "same"
    objects_copied: int = 0
    rows: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    rolled_back: bool = False
    details: dict[str, Any] = Field(default_factory=dict)
    # The namespace of the installation whose backup service runs the job (its leases are
    # there); null for records written before it was kept, counted as this installation's.
    run_by_namespace: str | None = Field(default=None, max_length=100)
