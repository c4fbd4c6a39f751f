"""Payload models of the events services publish.

Every event carries an `event_id`, used as `Nats-Msg-Id`, so consumers can be idempotent.
Unknown fields are kept so an older consumer does not drop what a newer producer sent.
Fields the catalog stores are bounded as for any outside input (`bounds`): a message beyond
them fails validation at the consumer, which dead-letters it, instead of failing in the
database.
"""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from loupe_shared.contracts.bounds import (
    FiniteFloat,
    JsonObject,
    NonNegativeInt32,
    NonNegativeInt64,
    PositiveInt32,
    StorableStr,
    Timestamp,
)


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")

    event_id: Annotated[StorableStr, Field(min_length=1, max_length=200)] = Field(
        default_factory=lambda: uuid.uuid4().hex
    )
    occurred_at: Timestamp = Field(default_factory=_now)
    request_id: StorableStr | None = None


class Thumbnail(BaseModel):
    size: NonNegativeInt32
    key: StorableStr
    width: NonNegativeInt32
    height: NonNegativeInt32
    # The WebP's own length and SHA-256 (the integrity scrub checks them).
    bytes: NonNegativeInt64 = 0
    sha256: StorableStr | None = None


class ImageStored(Event):
    sha256: StorableStr
    size: NonNegativeInt64
    width: NonNegativeInt32
    height: NonNegativeInt32
    content_type: StorableStr
    kind: Literal["master", "capture", "overlay"]
    line_id: StorableStr = ""
    thumbnails: list[Thumbnail] = Field(default=[], max_length=64)


class ImageDeleted(Event):
    sha256: StorableStr
    forced: bool = False
    # "delete" (asked for) or "gc" (collected unreferenced).
    reason: StorableStr = "delete"


class ProgramRevised(Event):
    program_id: str
    revision: PositiveInt32
    data_checksum: str
    master_image_sha256: str | None


class ProgramArchived(Event):
    program_id: str
    archived: bool


class BackupProgress(Event):
    backup_id: str
    percent: FiniteFloat
    bytes_done: NonNegativeInt64
    objects_done: NonNegativeInt64


class BackupFinished(Event):
    backup_id: str
    status: Literal["completed", "failed"]
    error: str | None = None


class AuditRecorded(Event):
    """An auditable action done outside the catalog; the catalog appends it to the audit log."""

    actor: StorableStr
    actor_token_id: StorableStr | None
    role: StorableStr
    action: StorableStr
    target: StorableStr
    before_checksum: StorableStr | None = None
    after_checksum: StorableStr | None = None
    details: JsonObject = Field(default_factory=dict)


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
