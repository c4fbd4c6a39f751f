"""Payload models of the events services publish.

Every event carries an `event_id`, used as `Nats-Msg-Id`, so consumers can be idempotent.
Unknown fields are kept so an older consumer does not drop what a newer producer sent.
"""

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")

    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: datetime = Field(default_factory=_now)
    request_id: str | None = None


class Thumbnail(BaseModel):
    size: int
    key: str
    width: int
    height: int
    # The WebP's own length and SHA-256 (the integrity scrub checks them).
    bytes: int = 0
    sha256: str | None = None


class ImageStored(Event):
    sha256: str
    size: int
    width: int
    height: int
    content_type: str
    kind: Literal["master", "capture", "overlay"]
    line_id: str = ""
    thumbnails: list[Thumbnail] = []


class ImageDeleted(Event):
    sha256: str
    forced: bool = False
    # "delete" (asked for) or "gc" (collected unreferenced).
    reason: str = "delete"


class ProgramRevised(Event):
    program_id: str
    revision: int
    data_checksum: str
    master_image_sha256: str | None


class ProgramArchived(Event):
    program_id: str
    archived: bool


class BackupProgress(Event):
    backup_id: str
    percent: float
    bytes_done: int
    objects_done: int


class BackupFinished(Event):
    backup_id: str
    status: Literal["completed", "failed"]
    error: str | None = None


class AuditRecorded(Event):
    """An auditable action done outside the catalog; the catalog appends it to the audit log."""

    actor: str
    actor_token_id: str | None
    role: str
    action: str
    target: str
    before_checksum: str | None = None
    after_checksum: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class IntegrityMismatch(Event):
    key: str
    expected_sha256: str
    actual_sha256: str | None
    problem: Literal["mismatch", "missing"]
    image_sha256: str | None = None
    # "blob" or "thumbnail-<size>".
    object: str | None = None
    # Where the corrupt bytes were moved (never deleted).
    quarantine_key: str | None = None
    # A thumbnail made again from its sound source.
    repaired: bool = False
