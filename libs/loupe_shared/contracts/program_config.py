"""Program config, schema version 3: the tools an inspection runs and how it aligns.

One model for both sides. The catalog validates every saved config with it as it stands
(unknown fields are refused) and publishes its JSON schema at `GET /api/programs/config-schema`,
so the docstrings and field descriptions below are the published text: they say what the
inspection worker does with each value. The worker reads the same model with unknown fields
ignored (`model_validate(..., extra="ignore")`), so a catalog that gained a field does not stop
the workers.

How the worker inspects: it aligns the capture to the master (see `Alignment`), then per
enabled tool takes the tool's ROI of the aligned capture. `presence` and `difference` compare
it with the master's ROI: brightness and contrast are matched to the master's, both are
smoothed, and a pixel is *changed* when it leaves the band the master's levels span around it
by more than `threshold` grey levels (raised per image to four times the comparison's own
noise, so a noisy camera does not reject good parts). The verdict fails when any tool fails.
"""

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from loupe_shared.contracts.bounds import StorableStr

SCHEMA_VERSION: Final = 3
MAX_TOOLS = 64

_STRICT = ConfigDict(extra="forbid", frozen=True)
_CHANGE_THRESHOLD = (
    "grey levels (after brightness and contrast are matched to the master's) by which a pixel "
    "must leave the master's band to count as changed; raised per image to what the "
    "comparison's own noise needs"
)


class Roi(BaseModel):
    """A rectangle in the master image's pixels. The worker clips it to the master; a ROI
    that keeps less than 3x3 pixels inside is an `error` result."""

    model_config = _STRICT

    x: int = Field(ge=0, le=65535)
    y: int = Field(ge=0, le=65535)
    width: int = Field(gt=0, le=65535)
    height: int = Field(gt=0, le=65535)


class _Tool(BaseModel):
    model_config = _STRICT

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    name: Annotated[StorableStr, Field(max_length=200)] = ""
    enabled: bool = Field(default=True, description="a disabled tool is not run")
    roi: Roi


class PresenceTool(_Tool):
    """The part is there: fails when the changed pixels of the ROI, all blobs together, reach
    `min_defect_area` (one `missing` defect then frames them). Similarity to the master is
    reported with the result, never tested."""

    type: Literal["presence"]
    threshold: float = Field(ge=0, le=255, description=_CHANGE_THRESHOLD)
    min_defect_area: int = Field(
        ge=1, le=100_000_000, description="changed pixels, all together, at which the tool fails"
    )


class DifferenceTool(_Tool):
    """Each connected blob of changed pixels of at least `min_defect_area` pixels is a
    defect; fails when there are more than `max_defects`."""

    type: Literal["difference"]
    threshold: float = Field(ge=0, le=255, description=_CHANGE_THRESHOLD)
    min_defect_area: int = Field(
        ge=1, le=100_000_000, description="pixels a blob needs to be a defect"
    )
    max_defects: int = Field(default=0, ge=0, le=10_000, description="defects still passing")


class BrightnessTool(_Tool):
    """The ROI's mean grey level, as captured (aligned, before any brightness matching),
    stays within `threshold` of the master's; otherwise the whole ROI is one defect."""

    type: Literal["brightness"]
    threshold: float = Field(
        ge=0, le=255, description="largest difference of mean grey levels that passes"
    )
    min_defect_area: int = Field(
        default=1, ge=1, le=100_000_000, description="not read by the brightness test"
    )


AnyTool = PresenceTool | DifferenceTool | BrightnessTool
Tool = Annotated[AnyTool, Field(discriminator="type")]
AlignMethod = Literal["ecc", "phase", "features", "none"]


class Alignment(BaseModel):
    """How the capture is brought into the master's frame before the tools run."""

    model_config = _STRICT

    method: AlignMethod = Field(
        default="ecc",
        description=(
            "`phase`: a pure shift (phase correlation); `ecc`: phase, then refined to shift "
            "and rotation, with ORB features as the fallback for a pose ECC cannot find within "
            "the limits; `features`: ORB features only; `none`: the capture is taken as aligned"
        ),
    )
    max_shift_px: float = Field(
        default=20.0,
        ge=0,
        le=10_000,
        description="largest expected shift (with some margin); beyond it `ecc` falls back",
    )
    max_rotation_deg: float = Field(
        default=2.0,
        ge=0,
        le=180,
        description="largest expected rotation (with some margin); beyond it `ecc` falls back",
    )
    scale: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="reduced scale the alignment runs at (lowered further for large images)",
    )


class Acquisition(BaseModel):
    """Camera settings for the line; the inspection does not read them."""

    model_config = _STRICT

    trigger_mode: Literal["internal", "external", "software"] = "internal"
    exposure: float | None = Field(default=None, ge=0, le=10_000_000)


class ProgramConfig(BaseModel):
    """An inspection program's config, schema version 3."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Loupe program config (v3)")

    schema_version: Literal[3] = SCHEMA_VERSION
    tools: list[Tool] = Field(default_factory=list, max_length=MAX_TOOLS)
    alignment: Alignment = Field(default_factory=Alignment)
    acquisition: Acquisition = Field(default_factory=Acquisition)
