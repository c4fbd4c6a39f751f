"""What the images API takes and answers: upload options, and a model for every JSON answer
(so the published OpenAPI document says what each route returns)."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from loupe_shared.contracts.bounds import NulFreeStr
from loupe_shared.contracts.events import Thumbnail
from loupe_shared.contracts.results import LINE_ID
from loupe_shared.kit.problems import Problem

SHA256 = r"^[0-9a-f]{64}$"
TAG = r"^[A-Za-z0-9][A-Za-z0-9 _.:/\-]{0,63}$"
Sha256Str = Annotated[str, StringConstraints(pattern=SHA256)]


class UploadOptions(BaseModel):
    """What an upload says about its image: as query parameters, or as multipart form fields
    beside the file (a form field wins) — checked the same either way."""

    kind: Literal["master", "capture"] = "master"
    # Empty: not from a line (a master image uploaded by hand).
    line_id: Annotated[str, Field(pattern=f"^$|{LINE_ID}")] = ""
    tags: list[Annotated[str, StringConstraints(pattern=TAG)]] = Field(
        default_factory=list, max_length=32
    )
    filename: Annotated[NulFreeStr, Field(max_length=500)] = ""

    def with_form(self, fields: dict[str, list[str]]) -> "UploadOptions":
        """These options with the multipart form's fields over them, checked again; a bad
        field is a 422 problem naming it as `form:<name>`."""
        values: dict[str, object] = self.model_dump()
        for name in ("kind", "line_id", "filename"):
            if name in fields:
                values[name] = fields[name][0]
        if "tags" in fields:
            values["tags"] = fields["tags"]
        try:
            return UploadOptions.model_validate(values)
        except ValidationError as exc:
            errors = [
                {"field": "form:" + ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
                for err in exc.errors()
            ]
            raise Problem(
                422,
                f"{errors[0]['field']}: {errors[0]['message']}",
                title="Validation failed",
                errors=errors,
            ) from None


class ExistsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: list[Sha256Str] = Field(max_length=1000)


# --- answers -------------------------------------------------------------------------------


# A thumbnail as a status records it (the WebP's own length and SHA-256 included).
ThumbnailEntry = Thumbnail


class ImageMetadata(BaseModel):
    sha256: str
    size: int
    width: int
    height: int
    content_type: str
    kind: str
    filename: str
    line_id: str
    tags: list[str]


class Uploaded(ImageMetadata):
    thumbnails: list[ThumbnailEntry] = Field(description="the thumbnails stored")
    thumbnails_pending: list[int] = Field(
        default=[],
        description=(
            "sizes (longest side, px) of thumbnails still being made after the answer; a GET "
            "of one waits for it (or makes it)"
        ),
    )
    duplicate: bool = Field(description="the same bytes were stored already")


class ExistsAnswer(BaseModel):
    present: list[str]
    missing: list[str]


class ImageStatus(BaseModel):
    sha256: str
    state: Literal["pending", "done", "failed"]
    error: str | None
    thumbnails: list[ThumbnailEntry]


class GcSummary(BaseModel):
    dry_run: bool
    grace_s: float
    examined: int
    older_than_grace: int
    referenced: int
    deferred: int
    collected: int
    collected_bytes: int
    collected_sha256: list[str] = Field(description="the first 1,000 collected")
    resumed: list[str] = Field(description="interrupted deletions finished first")
    seconds: float


class ScrubPass(BaseModel):
    model_config = ConfigDict(extra="allow")

    pass_id: str
    started_at: str
    finished_at: str
    objects: int
    bytes: int
    findings: int
    resolved: int


class ScrubState(BaseModel):
    """The scrub's saved position and counts; only `state` and `running_here` before the
    first pass (answered without the fields not set)."""

    model_config = ConfigDict(extra="allow")

    state: str = Field(description='"never run", "running" or "done"')
    running_here: bool
    pass_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    next_shard: int | None = None
    objects: int | None = None
    bytes: int | None = None
    findings: int | None = None
    resolved: int | None = None
    last_complete: ScrubPass | None = None


class Finding(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    image_sha256: str
    object: str = Field(description='"blob" or "thumbnail-<size>"')
    key: str
    problem: Literal["missing", "mismatch"]
    expected_sha256: str
    actual_sha256: str | None
    quarantine_key: str | None
    repaired: bool
    found_at: str
    pass_id: str
    resolved_at: str | None


class IntegrityReport(BaseModel):
    scrub: ScrubState
    findings: list[Finding]
    next_cursor: str | None


class ScrubStarted(BaseModel):
    started: bool = Field(description="false when a pass was running already")
    scrub: ScrubState
