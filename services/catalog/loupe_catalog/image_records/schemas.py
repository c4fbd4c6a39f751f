"""What the catalog answers about the images it has records of."""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel


class ImageRecord(BaseModel):
    sha256: str
    size: int
    width: int
    height: int
    content_type: str
    kind: str
    thumbnails: list[dict[str, Any]]
    first_seen_at: datetime
    source: str
    line_id: str
    thumbnail_bytes: int
    deleted_at: datetime | None


class ImageRecordPage(BaseModel):
    items: list[ImageRecord]
    next_cursor: str | None


class Reference(BaseModel):
    program_id: uuid.UUID
    name: str
    archived: bool
    revision: int
    current: bool


class References(BaseModel):
    sha256: str
    referenced: bool
    programs: list[Reference]


class Usage(BaseModel):
    bytes: int = 0
    objects: int = 0


class LineUsage(BaseModel):
    line_id: str
    total: Usage
    kinds: dict[str, Usage]


class StorageUsage(BaseModel):
    total: Usage
    kinds: dict[str, Usage]
    lines: list[LineUsage]
    counted_at: datetime
