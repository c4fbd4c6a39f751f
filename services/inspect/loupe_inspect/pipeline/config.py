"""The part of a program revision's config the pipeline reads (program config schema v3).

The catalog validates configs strictly; the worker reads them leniently (unknown fields are
ignored), so a catalog that gained a field does not stop the workers."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Roi(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    x: int = Field(ge=0)
    y: int = Field(ge=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class _Tool(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str = ""
    enabled: bool = True
    roi: Roi
    # Grey levels (after brightness and contrast are matched to the master) counted as a
    # change; raised per image to what the comparison's own noise needs.
    threshold: float = Field(default=30.0, ge=0, le=255)
    min_defect_area: int = Field(default=1, ge=1)


class PresenceTool(_Tool):
    """The part is there: fails when the changed area of the ROI, all blobs together,
    reaches `min_defect_area` pixels."""

    type: Literal["presence"]


class DifferenceTool(_Tool):
    """Each blob of changed pixels of at least `min_defect_area` is a defect; fails when
    there are more than `max_defects`."""

    type: Literal["difference"]
    max_defects: int = Field(default=0, ge=0)


class BrightnessTool(_Tool):
    """The ROI's mean grey level (as captured, before any normalisation) stays within
    `threshold` of the master's."""

    type: Literal["brightness"]


Tool = Annotated[PresenceTool | DifferenceTool | BrightnessTool, Field(discriminator="type")]
AlignMethod = Literal["ecc", "phase", "features", "none"]


class Alignment(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    method: AlignMethod = "ecc"
    max_shift_px: float = Field(default=20.0, ge=0)
    max_rotation_deg: float = Field(default=2.0, ge=0)
    # Reduced scale the alignment runs at (the worker lowers it further for large images).
    scale: float = Field(default=0.5, gt=0, le=1)


class InspectionConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    tools: list[Tool] = Field(default_factory=list)
    alignment: Alignment = Field(default_factory=Alignment)

    @property
    def enabled_tools(self) -> list[PresenceTool | DifferenceTool | BrightnessTool]:
        return [tool for tool in self.tools if tool.enabled]
