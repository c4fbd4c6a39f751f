import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from loupe_shared.contracts.bounds import JsonObject, StorableStr, no_surrogate

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def _no_control_chars(value: str) -> str:
    if any(ord(c) < 32 for c in value):
        raise ValueError("must not contain control characters")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_control_chars),
    AfterValidator(no_surrogate),
]
Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.:/\-]{0,63}$")]


def _unique(tags: list[str]) -> list[str]:
    if len(set(tags)) != len(tags):
        raise ValueError("tags must be unique")
    return tags


class ProgramWrite(BaseModel):
    """A program as the frontend saves it; every save makes a new immutable revision."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Annotated[StorableStr, Field(max_length=4000)] = ""
    tags: Annotated[list[Tag], AfterValidator(_unique)] = Field(default_factory=list, max_length=32)
    config: JsonObject = Field(description="validated against GET /api/programs/config-schema")
    master_image_sha256: Sha256 | None = None
    message: Annotated[StorableStr, Field(max_length=500)] = Field(
        default="", description="what this revision changes"
    )


class ProgramCreate(ProgramWrite):
    legacy_id: Annotated[StorableStr, Field(min_length=1, max_length=200)] | None = None


class ProgramSummary(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    tags: list[str]
    archived: bool
    revision: int
    master_image_sha256: str | None
    data_checksum: str
    created_at: datetime
    updated_at: datetime


class Program(ProgramSummary):
    archived_at: datetime | None
    schema_version: int
    config: dict[str, Any]
    last_backup_at: datetime | None
    migration_status: str
    legacy_id: str | None
    version: int


class ProgramPage(BaseModel):
    items: list[ProgramSummary]
    next_cursor: str | None


class Revision(BaseModel):
    program_id: uuid.UUID
    revision: int
    name: str
    description: str
    tags: list[str]
    schema_version: int
    config: dict[str, Any]
    master_image_sha256: str | None
    data_checksum: str
    created_at: datetime
    created_by: str
    message: str


class RevisionSummary(BaseModel):
    revision: int
    name: str
    master_image_sha256: str | None
    data_checksum: str
    created_at: datetime
    created_by: str
    message: str


class RevisionPage(BaseModel):
    items: list[RevisionSummary]
    next_cursor: str | None


class ConfigChange(BaseModel):
    path: str
    change: Literal["added", "removed", "changed"]
    before: Any = None
    after: Any = None


class FieldChange(BaseModel):
    before: Any
    after: Any


class RevisionDiff(BaseModel):
    program_id: uuid.UUID
    from_revision: int
    to_revision: int
    fields: dict[str, FieldChange]
    config: list[ConfigChange]
    master_image: FieldChange | None


SortKey = Literal["name", "-name", "created_at", "-created_at", "updated_at", "-updated_at"]
ArchivedFilter = Literal["false", "true", "all"]


class ConfigSchema(BaseModel):
    """The JSON schema every program config is validated against, and its version."""

    model_config = ConfigDict(populate_by_name=True)

    schema_version: int
    json_schema: dict[str, Any] = Field(alias="schema")
