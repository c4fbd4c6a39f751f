"""Requests one service answers for another over NATS request/reply.

The images service asks the catalog before it deletes a blob: the catalog owns the program
revisions that reference images, and only it can check and claim atomically.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from loupe_shared.contracts.bounds import StorableStr

MAX_CLAIM = 500
CENTURY_S = 100 * 365.25 * 86400
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class ImageClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: list[Sha256] = Field(max_length=MAX_CLAIM)
    reason: Literal["delete", "gc"]
    claimed_by: Annotated[StorableStr, Field(max_length=200)]
    force: bool = False
    # Only re-check the references; claim nothing.
    dry_run: bool = False


class ImageClaimReply(BaseModel):
    granted: list[str] = []
    # Referenced hashes with what uses them (program revisions, results).
    referenced: dict[str, list[dict[str, Any]]] = {}
    # Not decided now (results are still being ingested and may reference them): asked
    # again at the next collection.
    deferred: list[str] = []
    error: str | None = None


class TombstonesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # At most a century: `now() - older_than_s` must stay a timestamp.
    older_than_s: float = Field(default=60.0, ge=0, le=CENTURY_S, allow_inf_nan=False)
    limit: int = Field(default=500, ge=1, le=MAX_CLAIM)


class TombstonesReply(BaseModel):
    sha256: list[str] = []
    error: str | None = None
