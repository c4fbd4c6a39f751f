from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loupe_backup.backups.manifest import Include
from loupe_backup.backups.records import BackupRecord, Compatibility
from loupe_shared.contracts.bounds import Timestamp


class IncludeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    programs: bool = True
    images: bool = True
    results: bool = True
    audit: bool = True
    # The API tokens (hashes only); without them every line must be given a new token
    # after a disaster restore.
    tokens: bool = True
    results_since: Timestamp | None = None
    results_until: Timestamp | None = None

    @model_validator(mode="after")
    def _range(self) -> "IncludeIn":
        for value in (self.results_since, self.results_until):
            if value is not None and value.tzinfo is None:
                raise ValueError("results_since/results_until must carry a time zone")
        if (
            self.results_since is not None
            and self.results_until is not None
            and self.results_since >= self.results_until
        ):
            raise ValueError("results_since must be before results_until")
        return self

    def to_include(self) -> Include:
        return Include(**self.model_dump())


class BackupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["full", "incremental"] = "full"
    include: IncludeIn = Field(default_factory=IncludeIn)


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["replace", "empty"] = "replace"
    dry_run: bool = True
    # Take a backup of the current state first (replace mode only).
    restore_point: bool = True
    # Put the set's API tokens back (hashes; a token revoked here stays revoked). Default:
    # yes for sets made by this installation, no for imported archives (whose tokens some
    # other installation issued) unless asked for.
    restore_tokens: bool | None = None


# --- answers -------------------------------------------------------------------------------


class BackupShown(BackupRecord):
    """A set as answered: `status` as it stands (a set whose job is gone is failed) and its
    compatibility with the running schema (null unless completed)."""

    compatibility: Compatibility | None = None


class BackupList(BaseModel):
    current_revisions: list[str]
    items: list[BackupShown]


class BackupDeleted(BaseModel):
    id: str
    deleted: bool
    files_removed: int
    blobs_collected: int


class TableRows(BaseModel):
    current_rows: int
    backup_rows: int


class TokensPlan(BaseModel):
    in_backup: int
    restored: bool


class RestorePlan(BaseModel):
    """The dry run: what a restore would change, and whether it can."""

    mode: str
    kind: str
    warnings: list[str]
    compatibility: Compatibility
    reasons: list[str]
    backup_revisions: list[str]
    current_revisions: list[str]
    tables: dict[str, TableRows]
    objects: int
    objects_to_copy: int
    bytes_to_copy: int
    can_restore: bool
    blockers: list[str]
    tokens: TokensPlan
