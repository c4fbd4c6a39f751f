"""The manifest of a backup set: what was backed up, with a checksum of every file and object.

Format 2 is current. Format 1 (the first release) named the object list `blobs`, kept one
Alembic revision as a string and had no column descriptions; it is read through `upgrade`.
A newer format than this code knows is refused.
"""

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from loupe_shared.contracts.backup import BACKUP_FORMAT_VERSION
from loupe_shared.contracts.bounds import (
    JsonObject,
    NonNegativeInt64,
    NulFreeStr,
    Timestamp,
    check_json,
    check_timestamp,
)
from loupe_shared.kit.auth import TokenRecord

Kind = Literal["full", "incremental", "restore-point", "imported"]
# A manifest is a few levels deep; anything deeper is not one this code wrote.
MANIFEST_MAX_DEPTH = 8
# An unquoted PostgreSQL identifier (at most 63 bytes): table, partition and column names.
Identifier = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
BackupId = Annotated[str, Field(pattern=r"^[0-9A-Za-z\-]{1,64}$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Revision = Annotated[str, Field(pattern=r"^[0-9A-Za-z_]{1,32}$")]
# An images-bucket key: one of its prefixes, then path segments of safe characters.
ObjectKey = Annotated[
    str, Field(pattern=r"^(blobs|thumbnails|status)(/[A-Za-z0-9_][A-Za-z0-9._\-]{0,127}){1,4}$")
]
ShortText = Annotated[NulFreeStr, Field(max_length=200)]
_RANGE = re.compile(r"^FOR VALUES FROM \('([0-9: T+\-]{1,40})'\) TO \('([0-9: T+\-]{1,40})'\)$")


def data_file(table: str) -> str:
    """A table's data file in a set: derived from the (validated) table name, never taken
    from a manifest."""
    return f"data/{table}.csv"


class Include(BaseModel):
    programs: bool = True
    images: bool = True
    results: bool = True
    results_since: Timestamp | None = None
    results_until: Timestamp | None = None
    audit: bool = True
    # API tokens (their hashes): not part of "complete", a restore may leave them out.
    tokens: bool = True

    @property
    def complete(self) -> bool:
        everything = self.programs and self.images and self.results and self.audit
        return everything and self.results_since is None and self.results_until is None


class Column(BaseModel):
    name: Identifier
    type: ShortText
    nullable: bool = True
    has_default: bool = False


def _bound_time(text: str) -> datetime:
    try:
        return check_timestamp(datetime.fromisoformat(text))
    except ValueError as exc:
        raise ValueError(f"partition bound '{text}' is not a timestamp that {exc}") from None


class Partition(BaseModel):
    """A partition of a range-partitioned table: the default one, or a range of
    timestamps. The bound is parsed and rendered again by `sql`, never used as written."""

    name: Identifier
    bound: Annotated[str, Field(max_length=200)]

    @field_validator("bound")
    @classmethod
    def _bound(cls, value: str) -> str:
        return cls.render(value)

    @classmethod
    def render(cls, bound: str) -> str:
        if bound == "DEFAULT":
            return bound
        match = _RANGE.match(bound)
        if match is None:
            raise ValueError("a partition bound is DEFAULT or FOR VALUES FROM ('…') TO ('…')")
        start, end = (_bound_time(t) for t in match.groups())
        if start >= end:
            raise ValueError("a partition's range must end after it starts")
        return f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"


class TableFile(BaseModel):
    table: Identifier
    file: Annotated[str, Field(max_length=80)]
    rows: NonNegativeInt64
    sha256: Sha256
    size: NonNegativeInt64
    columns: list[Column] = Field(default_factory=list, max_length=1600)
    partitions: list[Partition] = Field(default_factory=list, max_length=10_000)

    @model_validator(mode="after")
    def _derived_file(self) -> "TableFile":
        if self.file != data_file(self.table):
            raise ValueError(f"the data file of table {self.table} must be {data_file(self.table)}")
        return self


class ObjectEntry(BaseModel):
    """An object of the images bucket, stored content-addressed in the backup bucket."""

    key: ObjectKey
    sha256: Sha256
    size: NonNegativeInt64
    content_type: Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,127}$")] = (
        "application/octet-stream"
    )
    metadata: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z0-9\-_]{1,64}$")],
        Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]{0,2048}$")],
    ] = Field(default_factory=dict, max_length=32)
    etag: Annotated[str, Field(pattern=r"^[\x20-\x7e]{0,200}$")] = ""


class BackedToken(TokenRecord):
    """A token record as a backup holds it: only the hash of its secret."""

    id: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    name: Annotated[NulFreeStr, Field(max_length=200)]
    secret_sha256: Sha256
    created_at: Timestamp
    created_by: Annotated[NulFreeStr, Field(max_length=200)]
    expires_at: Timestamp | None = None
    revoked_at: Timestamp | None = None


class Manifest(BaseModel):
    format_version: int = BACKUP_FORMAT_VERSION
    backup_id: BackupId
    kind: Kind
    parent_id: BackupId | None = None
    created_at: Timestamp
    app_version: ShortText
    alembic_revisions: list[Revision] = Field(max_length=64)
    include: Include
    tables: list[TableFile] = Field(max_length=1000)
    objects: list[ObjectEntry]
    # Source objects left out because their bytes no longer match their hash.
    source_problems: list[JsonObject] = Field(default_factory=list, max_length=100_000)
    tokens: list[BackedToken] = Field(default_factory=list, max_length=100_000)

    @model_validator(mode="after")
    def _unique_tables(self) -> "Manifest":
        names = [t.table for t in self.tables]
        if len(set(names)) != len(names):
            raise ValueError("a table is listed twice")
        return self

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


class InvalidManifest(ValueError):
    pass


def _problems(exc: ValidationError) -> str:
    shown = [
        f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}" for e in exc.errors()[:5]
    ]
    more = exc.error_count() - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def parse(data: bytes) -> Manifest:
    """Raise `UnsupportedFormat` for a format this code does not read, `InvalidManifest`
    (naming the fields) for anything else that is not a manifest this code wrote."""
    try:
        # orjson refuses documents nested deeper than 1024 levels with a ValueError (the
        # standard library's parser would recurse until RecursionError).
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidManifest(f"the manifest is not JSON, or nested too deep: {exc}") from None
    try:
        check_json(raw, max_depth=MANIFEST_MAX_DEPTH, max_bytes=max(len(data) * 2, 1024))
    except ValueError as exc:
        raise InvalidManifest(f"the manifest {exc}") from None
    if not isinstance(raw, dict):
        raise UnsupportedFormat("the manifest is not a JSON object")
    try:
        return Manifest.model_validate(upgrade(raw))
    except ValidationError as exc:
        raise InvalidManifest(_problems(exc)) from None
