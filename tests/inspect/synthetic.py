"""The inspection test suite, made offline from images shipped inside scikit-image: a master
cut from a source image, captures of it under known warps (shift up to 20 px, rotation up to
2 degrees, brightness and contrast within 15 %, sensor noise), and bad parts with injected
defects (scratches, blobs, missing parts) whose ground truth is known.

Every case comes from its seed alone. Tests use `TEST_SEEDS`; the benchmark measures the
pipeline's accuracy on `HELD_OUT_SEEDS` too, which no test reads, so the pipeline is not tuned
to the cases it is judged by."""

import math
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

Gray = NDArray[np.uint8]
TEST_SEEDS = range(0, 10_000)
HELD_OUT_SEEDS = range(1_000_000, 1_010_000)
MARGIN = 40  # source pixels around the master, so a warped capture has no empty border
ROI_INSET = 8
# A defect covers at least this fraction of the ROI (the detection target).
MIN_DEFECT_FRACTION = 0.001
MAX_DEFECT_FRACTION = 0.005
# The change a defect makes, in grey levels averaged over its pixels, before noise.
MIN_VISIBLE_CHANGE = 40.0
SOURCES = (
    "camera",
    "astronaut",
    "coins",
    "moon",
    "brick",
    "clock",
    "cell",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "gravel",
    "grass",
)


@cache
def source(name: str) -> Gray:
    from skimage import data

    image = np.asarray(getattr(data, name)())
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)
    if image.dtype != np.uint8:
        span = float(np.ptp(image)) or 1.0
        image = (image.astype(np.float32) - float(image.min())) * (255.0 / span)
    return np.ascontiguousarray(image, dtype=np.uint8)


@dataclass(frozen=True)
class TruthDefect:
    kind: str  # scratch, blob or missing
    x: int
    y: int
    width: int
    height: int
    area: int


@dataclass
class Case:
    seed: int
    source: str
    master: Gray
    capture: Gray
    shift: tuple[float, float]
    rotation_deg: float
    gain: float
    noise: float
    defects: list[TruthDefect] = field(default_factory=list)

    @property
    def good(self) -> bool:
        return not self.defects

    @property
    def roi(self) -> dict[str, int]:
        h, w = self.master.shape
        return {
            "x": ROI_INSET,
            "y": ROI_INSET,
            "width": w - 2 * ROI_INSET,
            "height": h - 2 * ROI_INSET,
        }

    @property
    def roi_area(self) -> int:
        return self.roi["width"] * self.roi["height"]


def program_config(case_roi: dict[str, int]) -> dict[str, Any]:
    """The program the suite is inspected with (program config schema v3)."""
    area = case_roi["width"] * case_roi["height"]
    return {
        "schema_version": 3,
        "tools": [
            {
                "id": "surface",
                "type": "difference",
                "roi": case_roi,
                "threshold": 30,
                "min_defect_area": max(4, round(area * MIN_DEFECT_FRACTION / 4)),
            },
            {"id": "exposure", "type": "brightness", "roi": case_roi, "threshold": 45},
        ],
        "alignment": {"method": "ecc", "max_shift_px": 20, "max_rotation_deg": 2, "scale": 0.5},
    }


def _change(before: Gray, after: Gray, mask: NDArray[np.bool_]) -> float:
    return float(np.abs(after[mask].astype(np.int16) - before[mask].astype(np.int16)).mean())


def _defect_mask(
    rng: np.random.Generator,
    kind: str,
    shape: tuple[int, int],
    box: tuple[int, int, int, int],
    area: float,
) -> NDArray[np.bool_]:
    x0, y0, x1, y1 = box
    mask = np.zeros(shape, np.uint8)
    if kind == "scratch":
        longest = 0.7 * min(x1 - x0, y1 - y0)
        thickness = max(int(rng.integers(2, 4)), math.ceil(area / longest))
        length = area / thickness
        angle = rng.uniform(0, math.pi)
        dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
        cx = rng.uniform(x0 + abs(dx), x1 - abs(dx))
        cy = rng.uniform(y0 + abs(dy), y1 - abs(dy))
        start, end = (round(cx - dx), round(cy - dy)), (round(cx + dx), round(cy + dy))
        cv2.line(mask, start, end, 1, thickness)
    elif kind == "blob":
        ratio = rng.uniform(0.5, 1.0)
        a = math.sqrt(area / (math.pi * ratio))
        cx, cy = rng.uniform(x0 + a, x1 - a), rng.uniform(y0 + a, y1 - a)
        axes = (max(2, round(a)), max(2, round(a * ratio)))
        cv2.ellipse(mask, (round(cx), round(cy)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
    else:  # a missing part: a rectangle of the part gone, showing the flat background
        ratio = rng.uniform(0.5, 2.0)
        w = math.sqrt(area * ratio)
        h = area / w
        cx, cy = rng.uniform(x0 + w / 2, x1 - w / 2), rng.uniform(y0 + h / 2, y1 - h / 2)
        cv2.rectangle(
            mask,
            (round(cx - w / 2), round(cy - h / 2)),
            (round(cx + w / 2), round(cy + h / 2)),
            1,
            -1,
        )
    return mask.astype(bool)


def _inject(
    rng: np.random.Generator, image: Gray, kind: str, box: tuple[int, int, int, int], area: float
) -> TruthDefect | None:
    """Put one visible defect in `image` (in place) inside `box` (x0, y0, x1, y1)."""
    for _ in range(20):
        mask = _defect_mask(rng, kind, image.shape, box, area)
        if not mask.any():
            continue
        before = image.copy()
        if kind == "missing":
            background = float(rng.choice([np.percentile(image, 2), np.percentile(image, 98)]))
            image[mask] = np.uint8(round(background))
        else:
            local = float(image[mask].mean())
            delta = rng.uniform(60, 110) * (-1 if local > 128 else 1)
            image[mask] = np.clip(image[mask].astype(np.float32) + delta, 0, 255).astype(np.uint8)
        if _change(before, image, mask) < MIN_VISIBLE_CHANGE:
            image[...] = before
            continue
        ys, xs = np.nonzero(mask)
        return TruthDefect(
            kind,
            int(xs.min()),
            int(ys.min()),
            int(np.ptp(xs)) + 1,
            int(np.ptp(ys)) + 1,
            int(mask.sum()),
        )
    return None


def make_case(seed: int, *, bad: bool | None = None, size: tuple[int, int] | None = None) -> Case:
    """The case of `seed`: a good part for even seeds, a bad one (1 to 3 defects) for odd
    seeds unless `bad` says; `size` (width, height) enlarges the part so the master has that
    size (for megapixel benchmarks)."""
    rng = np.random.default_rng(seed)
    name = SOURCES[seed // 2 % len(SOURCES)]
    scene = source(name).copy()
    scale = 1.0
    if size is not None:
        scale = size[0] / (scene.shape[1] - 2 * MARGIN)
        margin = round(MARGIN * scale)
        full = (size[0] + 2 * margin, size[1] + 2 * margin)
        scene = np.asarray(cv2.resize(scene, full, interpolation=cv2.INTER_CUBIC), np.uint8)
    margin = round(MARGIN * scale)
    height, width = scene.shape[0] - 2 * margin, scene.shape[1] - 2 * margin
    master = np.ascontiguousarray(scene[margin : margin + height, margin : margin + width])
    is_bad = bool(seed % 2) if bad is None else bad
    defects: list[TruthDefect] = []
    if is_bad:
        roi_area = (width - 2 * ROI_INSET) * (height - 2 * ROI_INSET)
        inset = margin + ROI_INSET + 6
        box = (inset, inset, scene.shape[1] - inset, scene.shape[0] - inset)
        for _ in range(int(rng.integers(1, 4))):
            kind = str(rng.choice(["scratch", "blob", "missing"]))
            fraction = rng.uniform(MIN_DEFECT_FRACTION, MAX_DEFECT_FRACTION)
            found = _inject(rng, scene, kind, box, fraction * roi_area)
            if found is not None:
                defects.append(
                    TruthDefect(
                        found.kind,
                        found.x - margin,
                        found.y - margin,
                        found.width,
                        found.height,
                        found.area,
                    )
                )
    shift = (float(rng.uniform(-20, 20)), float(rng.uniform(-20, 20)))
    rotation = float(rng.uniform(-2, 2))
    gain = float(rng.uniform(0.85, 1.15))
    noise = float(rng.uniform(1.0, 4.0))
    # Capture pixel p shows scene point R(p + margin - c) + c + shift.
    c = np.array([scene.shape[1] / 2, scene.shape[0] / 2])
    theta = math.radians(rotation)
    r = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    t = r @ (np.array([margin, margin]) - c) + c + np.array(shift)
    matrix = np.hstack([r, t.reshape(2, 1)])
    capture = cv2.warpAffine(
        scene,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    ).astype(np.float32)
    capture = capture * gain + rng.normal(0, noise, capture.shape)
    return Case(
        seed=seed,
        source=name,
        master=master,
        capture=np.clip(capture, 0, 255).astype(np.uint8),
        shift=shift,
        rotation_deg=rotation,
        gain=gain,
        noise=noise,
        defects=defects,
    )


def encode_png(image: Gray) -> bytes:
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    return bytes(data)


def found(truth: TruthDefect, boxes: list[tuple[int, int, int, int]], slack: int = 3) -> bool:
    """Whether a reported box (x, y, w, h) overlaps the defect."""
    for x, y, w, h in boxes:
        if (
            x <= truth.x + truth.width + slack
            and truth.x <= x + w + slack
            and y <= truth.y + truth.height + slack
            and truth.y <= y + h + slack
        ):
            return True
    return False
