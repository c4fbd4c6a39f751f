"""Requests one service answers for another over NATS request/reply.

The images service asks the catalog before it deletes a blob: the catalog owns the program
revisions that reference images, and only it can check and claim atomically.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_CLAIM = 500


class ImageClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: list[str] = Field(max_length=MAX_CLAIM)
    reason: Literal["delete", "gc"]
    claimed_by: str
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

    older_than_s: float = 60.0
    limit: int = Field(default=500, ge=1, le=MAX_CLAIM)


class TombstonesReply(BaseModel):
    sha256: list[str] = []
    error: str | None = None
