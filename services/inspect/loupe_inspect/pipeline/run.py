"""One inspection: align, warp, compare per ROI, evaluate the tools, decide the verdict."""

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from loupe_inspect.pipeline import compare as cmp
from loupe_inspect.pipeline.align import Pose, align
from loupe_inspect.pipeline.config import (
    BrightnessTool,
    DifferenceTool,
    InspectionConfig,
    PresenceTool,
)
from loupe_inspect.pipeline.images import Gray, PreparedMaster, align_scale, reduce

Rect = tuple[int, int, int, int]


class RoiOutside(ValueError):
    """A tool's ROI lies outside the master image."""


@dataclass(frozen=True)
class Found:
    """A defect in master coordinates."""

    kind: str
    tool_id: str
    x: int
    y: int
    width: int
    height: int
    area: float
    score: float


@dataclass(frozen=True)
class ToolOutcome:
    tool_id: str
    type: str
    passed: bool
    measured: float
    limit: float
    defects: list[Found]


@dataclass
class Outcome:
    verdict: Literal["pass", "fail"]
    tools: list[ToolOutcome]
    pose: Pose
    # Mean normalised correlation of the capture with the master over the ROIs (1: same).
    similarity: float | None

    @property
    def defects(self) -> list[Found]:
        return [defect for tool in self.tools for defect in tool.defects]


def clip_roi(tool_roi: tuple[int, int, int, int], shape: tuple[int, int]) -> Rect:
    x, y, w, h = tool_roi
    height, width = shape
    x0, y0 = min(x, width), min(y, height)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 - x0 < 3 or y1 - y0 < 3:
        raise RoiOutside(f"ROI {tool_roi} lies outside the {width}x{height} master image")
    return x0, y0, x1 - x0, y1 - y0


def _union(rects: list[Rect]) -> Rect:
    x0 = min(r[0] for r in rects)
    y0 = min(r[1] for r in rects)
    x1 = max(r[0] + r[2] for r in rects)
    y1 = max(r[1] + r[3] for r in rects)
    return x0, y0, x1 - x0, y1 - y0


def _shifted(matrix: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """The pose for an output that starts at (x0, y0) of the master's frame."""
    moved = matrix.astype(np.float64).copy()
    moved[:, 2] = matrix[:, :2].astype(np.float64) @ np.array([x0, y0]) + matrix[:, 2]
    return moved


def _covered(matrix: np.ndarray, rect: Rect, capture_shape: tuple[int, ...]) -> bool:
    """Whether the capture covers all of `rect` (an affine map keeps the rectangle's
    image convex, so its corners decide)."""
    x, y, w, h = rect
    corners = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], float)
    mapped = corners @ matrix.astype(np.float64).T
    height, width = capture_shape[:2]
    return bool(
        (mapped[:, 0] >= 0).all()
        and (mapped[:, 0] <= width - 1).all()
        and (mapped[:, 1] >= 0).all()
        and (mapped[:, 1] <= height - 1).all()
    )


_COVERAGE_SCALE = 4


def _coverage(local: np.ndarray, capture_shape: tuple[int, ...], size: tuple[int, int]) -> Gray:
    """255 where the warped capture has pixels of its own (not a replicated border). Made
    at a quarter of the scale and enlarged: only its edge matters. Eroded by 13 x 13 pixels
    (half a quarter-scale pixel, as an edge block may be partly outside, and the smoothing's
    reach) without an erosion at full scale: a pixel x stays when the quarter-scale pixels
    (x - 6) // 4 ... (x + 6) // 4 are all 255, and those are (x + 2) // 4 - 2 ... + 1; so
    the quarter-scale mask eroded by a 4 x 4 square anchored at (2, 2), enlarged and read
    from 2 pixels on, is the same mask. Pixels past the output count as covered, as in an
    erosion's border."""
    q = _COVERAGE_SCALE
    ones = np.full((capture_shape[0] // q, capture_shape[1] // q), 255, np.uint8)
    small = local.astype(np.float64).copy()
    small[:, 2] /= q
    out_w, out_h = max(1, -(-size[0] // q)), max(1, -(-size[1] // q))
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    covered = cv2.warpAffine(ones, small, (out_w + 1, out_h + 1), flags=flags, borderValue=0)
    covered[out_h:, :] = 255
    covered[:, out_w:] = 255
    lead = 2
    eroded = cv2.erode(covered, np.ones((q, q), np.uint8), anchor=(lead, lead))
    full = cv2.resize(eroded, ((out_w + 1) * q, (out_h + 1) * q), interpolation=cv2.INTER_NEAREST)
    return np.asarray(full[lead : lead + size[1], lead : lead + size[0]], dtype=np.uint8)


def inspect(
    master: PreparedMaster, capture: Gray, config: InspectionConfig, *, max_align_pixels: int
) -> Outcome:
    tools = config.enabled_tools
    rects = [clip_roi((t.roi.x, t.roi.y, t.roi.width, t.roi.height), master.shape) for t in tools]
    scale = align_scale(master.gray.shape, config.alignment.scale, max_align_pixels)
    pose = align(master.reduced(scale), reduce(capture, scale), scale, config.alignment)
    if not tools:
        return Outcome("pass", [], pose, None)

    region = _union(rects)
    rx, ry, rw, rh = region
    local = _shifted(pose.matrix, rx, ry)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped: Gray = np.asarray(
        cv2.warpAffine(capture, local, (rw, rh), flags=flags, borderMode=cv2.BORDER_REPLICATE),
        dtype=np.uint8,
    )
    valid: Gray | None = None
    if not _covered(pose.matrix, region, capture.shape):
        valid = _coverage(local, capture.shape, (rw, rh))

    outcomes: list[ToolOutcome] = []
    similarities: list[float] = []
    for tool, rect in zip(tools, rects, strict=True):
        x, y, w, h = rect
        crop = warped[y - ry : y - ry + h, x - rx : x - rx + w]
        mask = None if valid is None else valid[y - ry : y - ry + h, x - rx : x - rx + w]
        if isinstance(tool, BrightnessTool):
            outcomes.append(_brightness(tool, rect, crop, master, mask))
            continue
        reference = master.roi(rect)
        comparison = cmp.compare(crop, reference, tool.threshold, mask)
        similarities.append(comparison.similarity)
        if isinstance(tool, DifferenceTool):
            outcomes.append(_difference(tool, rect, comparison))
        else:
            outcomes.append(_presence(tool, rect, comparison))
    verdict: Literal["pass", "fail"] = "pass" if all(o.passed for o in outcomes) else "fail"
    similarity = float(np.mean(similarities)) if similarities else None
    return Outcome(verdict, outcomes, pose, similarity)


def _difference(tool: DifferenceTool, rect: Rect, comparison: cmp.Comparison) -> ToolOutcome:
    x, y, _, _ = rect
    found = [
        Found("difference", tool.id, x + b.x, y + b.y, b.width, b.height, b.area, b.peak)
        for b in cmp.blobs(comparison.changed, comparison.excess, tool.min_defect_area)
    ]
    return ToolOutcome(
        tool.id, tool.type, len(found) <= tool.max_defects, len(found), tool.max_defects, found
    )


def _presence(tool: PresenceTool, rect: Rect, comparison: cmp.Comparison) -> ToolOutcome:
    x, y, _, _ = rect
    changed = int(cv2.countNonZero(comparison.changed))
    passed = changed < tool.min_defect_area
    found: list[Found] = []
    if not passed:
        bx, by, bw, bh = cv2.boundingRect(comparison.changed)
        peak = float(comparison.excess[comparison.changed > 0].max())
        found.append(Found("missing", tool.id, x + bx, y + by, bw, bh, changed, peak))
    return ToolOutcome(tool.id, tool.type, passed, changed, tool.min_defect_area, found)


def _brightness(
    tool: BrightnessTool, rect: Rect, crop: Gray, master: PreparedMaster, mask: Gray | None
) -> ToolOutcome:
    x, y, w, h = rect
    captured = float(cv2.mean(crop, mask)[0])
    expected = master.mean(rect)
    delta = captured - expected
    passed = abs(delta) <= tool.threshold
    found = [] if passed else [Found("brightness", tool.id, x, y, w, h, w * h, abs(delta))]
    return ToolOutcome(tool.id, tool.type, passed, delta, tool.threshold, found)
