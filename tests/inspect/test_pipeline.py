"""The pipeline on its own (no servers): each tool, the alignment methods, bad input, and
the accuracy targets on the scikit-image suite."""

import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import pytest

from loupe_inspect.pipeline.align import AlignmentFailed
from loupe_inspect.pipeline.config import InspectionConfig
from loupe_inspect.pipeline.images import PreparedMaster, UndecodableImage, decode_gray
from loupe_inspect.pipeline.run import Outcome, RoiOutside, _coverage, inspect
from tests.inspect import synthetic

ALIGN_PIXELS = 400_000


def run(master: np.ndarray, capture: np.ndarray, config: Mapping[str, Any]) -> Outcome:
    return inspect(
        PreparedMaster("m", master),
        capture,
        InspectionConfig.model_validate(config),
        max_align_pixels=ALIGN_PIXELS,
    )


def tool(kind: str, roi: dict[str, int], **fields: object) -> dict[str, object]:
    return {"id": f"{kind}-1", "type": kind, "roi": roi, "threshold": 30, **fields}


@pytest.fixture(scope="module")
def part() -> synthetic.Case:
    return synthetic.make_case(0, bad=False)


def test_a_good_part_passes_every_tool(part: synthetic.Case) -> None:
    roi = part.roi
    outcome = run(
        part.master,
        part.capture,
        {
            "tools": [
                tool("difference", roi, min_defect_area=50),
                tool("presence", roi, min_defect_area=500),
                tool("brightness", roi, threshold=45),
            ]
        },
    )
    assert outcome.verdict == "pass", outcome.tools
    assert [t.passed for t in outcome.tools] == [True, True, True]
    assert outcome.similarity is not None
    assert outcome.similarity > 0.9
    # The known pose is found: shift within a pixel of the generated one at the centre.
    assert outcome.pose.method == "ecc"
    assert abs(outcome.pose.rotation_deg + part.rotation_deg) < 0.2


def test_a_scratch_is_found_where_it_is(part: synthetic.Case) -> None:
    capture = part.capture.copy()
    cv2.line(capture, (120, 150), (200, 170), 255, 3)
    outcome = run(
        part.master, capture, {"tools": [tool("difference", part.roi, min_defect_area=50)]}
    )
    assert outcome.verdict == "fail"
    [defect] = outcome.defects
    assert defect.kind == "difference"
    assert defect.tool_id == "difference-1"
    assert defect.area >= 150
    assert defect.score > 30
    # Reported in master coordinates: the scratch's ends, mapped back, lie in the box.
    back = cv2.invertAffineTransform(outcome.pose.matrix)
    for end in ((120, 150), (200, 170)):
        x, y = back @ np.array([*end, 1.0])
        assert defect.x - 3 <= x <= defect.x + defect.width + 3
        assert defect.y - 3 <= y <= defect.y + defect.height + 3


def test_max_defects_allows_that_many_blobs(part: synthetic.Case) -> None:
    capture = part.capture.copy()
    cv2.circle(capture, (100, 100), 8, 0, -1)
    config = {"tools": [tool("difference", part.roi, min_defect_area=50, max_defects=1)]}
    assert run(part.master, capture, config).verdict == "pass"
    cv2.circle(capture, (300, 300), 8, 0, -1)
    assert run(part.master, capture, config).verdict == "fail"


def test_presence_fails_when_the_part_is_missing(part: synthetic.Case) -> None:
    roi = {"x": 150, "y": 150, "width": 120, "height": 120}
    config = {"tools": [tool("presence", roi, min_defect_area=2000)]}
    assert run(part.master, part.capture, config).verdict == "pass"
    capture = part.capture.copy()
    capture[100:330, 100:330] = int(np.median(part.capture))
    outcome = run(part.master, capture, config)
    assert outcome.verdict == "fail"
    assert outcome.defects[0].kind == "missing"
    assert outcome.tools[0].measured >= 2000


def test_brightness_is_measured_before_normalisation(part: synthetic.Case) -> None:
    config = {"tools": [tool("brightness", part.roi, threshold=20)]}
    darker = np.clip(part.capture.astype(np.int16) - 40, 0, 255).astype(np.uint8)
    outcome = run(part.master, darker, config)
    assert outcome.verdict == "fail"
    assert outcome.tools[0].measured < -20
    # The difference tool matches levels first, so the same capture has no defect.
    assert (
        run(
            part.master, darker, {"tools": [tool("difference", part.roi, min_defect_area=50)]}
        ).verdict
        == "pass"
    )


def test_disabled_tools_do_not_count(part: synthetic.Case) -> None:
    darker = np.clip(part.capture.astype(np.int16) - 60, 0, 255).astype(np.uint8)
    config = {"tools": [tool("brightness", part.roi, threshold=10, enabled=False)]}
    outcome = run(part.master, darker, config)
    assert outcome.verdict == "pass"
    assert outcome.tools == []


def test_a_large_pose_falls_back_to_features(part: synthetic.Case) -> None:
    h, w = part.master.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 12.0, 1.0)
    matrix[:, 2] += (30, -25)
    capture = cv2.warpAffine(part.master, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
    roi = {"x": 100, "y": 100, "width": w - 200, "height": h - 200}
    outcome = run(part.master, capture, {"tools": [tool("difference", roi, min_defect_area=80)]})
    assert outcome.pose.method.startswith("features")
    assert math.isclose(abs(outcome.pose.rotation_deg), 12.0, abs_tol=0.5)
    assert outcome.verdict == "pass", outcome.defects[:3]


def test_phase_correlation_finds_a_pure_shift(part: synthetic.Case) -> None:
    h, w = part.master.shape
    matrix = np.array([[1, 0, 13], [0, 1, -7]], np.float32)
    capture = cv2.warpAffine(part.master, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
    config = {
        "alignment": {"method": "phase"},
        "tools": [tool("difference", part.roi, min_defect_area=50)],
    }
    outcome = run(part.master, capture, config)
    assert outcome.pose.method == "phase"
    assert math.isclose(float(outcome.pose.matrix[0, 2]), 13, abs_tol=0.5)
    assert math.isclose(float(outcome.pose.matrix[1, 2]), -7, abs_tol=0.5)
    assert outcome.verdict == "pass"


def test_an_roi_outside_the_master_is_refused(part: synthetic.Case) -> None:
    roi = {"x": 5000, "y": 10, "width": 10, "height": 10}
    with pytest.raises(RoiOutside, match="outside"):
        run(part.master, part.capture, {"tools": [tool("difference", roi, min_defect_area=5)]})


def test_an_unrelated_capture_cannot_be_aligned_by_features(part: synthetic.Case) -> None:
    flat = np.full_like(part.master, 128)
    with pytest.raises(AlignmentFailed):
        run(part.master, flat, {"alignment": {"method": "features"}, "tools": []})


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_undecodable_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(UndecodableImage):
        decode_gray(data)


def test_decoding_makes_grey_from_colour() -> None:
    colour = np.zeros((20, 30, 3), np.uint8)
    colour[..., 2] = 200
    image = decode_gray(synthetic.encode_png(colour))
    assert image.shape == (20, 30)
    assert image.dtype == np.uint8
    assert image.mean() > 50


def _coverage_at_full_scale(
    local: np.ndarray, capture_shape: tuple[int, int], size: tuple[int, int]
) -> np.ndarray:
    """The coverage mask made the plain way: enlarged, then eroded at full scale."""
    ones = np.full((capture_shape[0] // 4, capture_shape[1] // 4), 255, np.uint8)
    small = local.astype(np.float64).copy()
    small[:, 2] /= 4
    out = (-(-size[0] // 4), -(-size[1] // 4))
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    covered = cv2.warpAffine(ones, small, out, flags=flags, borderValue=0)
    full = cv2.resize(covered, (out[0] * 4, out[1] * 4), interpolation=cv2.INTER_NEAREST)
    return np.asarray(cv2.erode(full[: size[1], : size[0]], np.ones((13, 13), np.uint8)))


def test_the_coverage_mask_is_the_full_scale_erosion_of_the_enlarged_mask() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        capture_h, capture_w, out_h, out_w = (int(v) for v in rng.integers(20, 300, 4))
        angle = math.radians(rng.uniform(-3, 3))
        local = np.array(
            [
                [math.cos(angle), -math.sin(angle), rng.uniform(-40, 60)],
                [math.sin(angle), math.cos(angle), rng.uniform(-40, 60)],
            ]
        )
        made = _coverage(local, (capture_h, capture_w), (out_w, out_h))
        expected = _coverage_at_full_scale(local, (capture_h, capture_w), (out_w, out_h))
        assert made.shape == expected.shape
        assert np.array_equal(made, expected)
