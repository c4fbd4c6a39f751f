"""The manifest of a backup set: what was backed up, with a checksum of every file and object.

Format 2 is current. Format 1 (the first release) named the object list `blobs`, kept one
Alembic revision as a string and had no column descriptions; it is read through `upgrade`.
A newer format than this code knows is refused.
"""

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from loupe_shared.contracts.backup import BACKUP_FORMAT_VERSION

Kind = Literal["full", "incremental", "restore-point", "imported"]


class Include(BaseModel):
    programs: bool = True
    images: bool = True
    results: bool = True
    results_since: datetime | None = None
    results_until: datetime | None = None
    audit: bool = True

    @property
    def complete(self) -> bool:
        everything = self.programs and self.images and self.results and self.audit
        return everything and self.results_since is None and self.results_until is None


class Column(BaseModel):
    name: str
    type: str
    nullable: bool = True
    has_default: bool = False


class Partition(BaseModel):
    name: str
    bound: str


class TableFile(BaseModel):
    table: str
    file: str
    rows: int
    sha256: str
    size: int
    columns: list[Column] = Field(default_factory=list)
    partitions: list[Partition] = Field(default_factory=list)


class ObjectEntry(BaseModel):
    """An object of the images bucket, stored content-addressed in the backup bucket."""

    key: str
    sha256: str
    size: int
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = Field(default_factory=dict)
    etag: str = ""


class Manifest(BaseModel):
    format_version: int = BACKUP_FORMAT_VERSION
    backup_id: str
    kind: Kind
    parent_id: str | None = None
    created_at: datetime
    app_version: str
    alembic_revisions: list[str]
    include: Include
    tables: list[TableFile]
    objects: list[ObjectEntry]
    # Source objects left out because their bytes no longer match their hash.
    source_problems: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {
            **{f"rows.{t.table}": t.rows for t in self.tables},
            "objects": len(self.objects),
            "object_bytes": sum(o.size for o in self.objects),
        }

    def blob_hashes(self) -> set[str]:
        return {o.sha256 for o in self.objects}


class UnsupportedFormat(ValueError):
    pass


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """Bring a manifest document of an older format to the current one."""
    version = raw.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise UnsupportedFormat("the manifest has no valid format_version")
    if version > BACKUP_FORMAT_VERSION:
        raise UnsupportedFormat(
            f"backup format {version} is newer than this installation reads "
            f"({BACKUP_FORMAT_VERSION}); restore it with a newer Loupe"
        )
    if version == 1:
        raw = dict(raw)
        raw["objects"] = raw.pop("blobs", [])
        revision = raw.pop("alembic_revision", None)
        raw["alembic_revisions"] = [revision] if revision else []
        raw["format_version"] = 2
    return raw


def parse(data: bytes) -> Manifest:
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise UnsupportedFormat(f"the manifest is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise UnsupportedFormat("the manifest is not a JSON object")
    return Manifest.model_validate(upgrade(raw))
