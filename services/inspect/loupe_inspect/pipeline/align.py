"""Align a capture to its master at reduced scale.

The answer is a 2x3 affine matrix at full scale mapping master coordinates to capture
coordinates, so `cv2.warpAffine(capture, W, flags=WARP_INVERSE_MAP)` brings the capture into
the master's frame. Phase correlation finds a pure shift in one FFT; ECC refines it to a
rigid motion (shift + rotation); ORB feature matching is the fallback when ECC does not
converge or answers a pose outside the program's limits (a large pose)."""

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from loupe_inspect.pipeline.config import Alignment
from loupe_inspect.pipeline.images import Gray

Matrix = NDArray[np.float32]
_ECC_ITERATIONS = 60
_ECC_EPS = 1e-4
# Below this ECC correlation the images are taken as not aligned.
_MIN_CORRELATION = 0.6
_FEATURES = 1500


class AlignmentFailed(ValueError):
    """The capture could not be aligned to the master within the program's limits."""


@dataclass(frozen=True)
class Pose:
    matrix: Matrix
    method: str
    shift_px: float
    rotation_deg: float
    correlation: float | None = None


def identity() -> Matrix:
    return np.eye(2, 3, dtype=np.float32)


def _pose(
    matrix: Matrix,
    method: str,
    correlation: float | None = None,
    centre: tuple[float, float] = (0.0, 0.0),
) -> Pose:
    """The shift is how far the master's centre moved (a rotation about the centre is no
    shift)."""
    cx, cy = centre
    moved_x = float(matrix[0, 0]) * cx + float(matrix[0, 1]) * cy + float(matrix[0, 2])
    moved_y = float(matrix[1, 0]) * cx + float(matrix[1, 1]) * cy + float(matrix[1, 2])
    shift = float(math.hypot(moved_x - cx, moved_y - cy))
    rotation = math.degrees(math.atan2(float(matrix[1, 0]), float(matrix[0, 0])))
    return Pose(matrix.astype(np.float32), method, shift, rotation, correlation)


def _within(pose: Pose, limits: Alignment, margin: float = 1.5) -> bool:
    # A pose somewhat past the limits is still trusted (the limits say what to expect,
    # the margin keeps a borderline part from being refused).
    return (
        pose.shift_px <= limits.max_shift_px * margin + 2
        and abs(pose.rotation_deg) <= limits.max_rotation_deg * margin + 0.5
    )


def _same_size(master: Gray, capture: Gray) -> Gray:
    """The capture cropped or padded (at the bottom and right) to the master's size."""
    if capture.shape == master.shape:
        return capture
    h, w = master.shape
    out = np.zeros_like(master)
    ch, cw = min(h, capture.shape[0]), min(w, capture.shape[1])
    out[:ch, :cw] = capture[:ch, :cw]
    return out


def phase(master: Gray, capture: Gray) -> Pose:
    window = cv2.createHanningWindow((master.shape[1], master.shape[0]), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(
        master.astype(np.float32), _same_size(master, capture).astype(np.float32), window
    )
    matrix = identity()
    matrix[0, 2], matrix[1, 2] = dx, dy
    return _pose(matrix, "phase")


def ecc(master: Gray, capture: Gray, start: Matrix) -> Pose:
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, _ECC_ITERATIONS, _ECC_EPS)
    matrix = start.astype(np.float32).copy()
    # gaussFiltSize 1: the reduced images are smooth already; more blur costs precision.
    # (The stubs do not allow the mask to be None together with gaussFiltSize.)
    correlation, matrix = cv2.findTransformECC(  # type: ignore[call-overload]
        master, _same_size(master, capture), matrix, cv2.MOTION_EUCLIDEAN, criteria, None, 1
    )
    return _pose(matrix, "ecc", float(correlation))


def features(master: Gray, capture: Gray) -> Pose:
    orb = cv2.ORB.create(_FEATURES)
    kp_m, des_m = orb.detectAndCompute(master, None)
    kp_c, des_c = orb.detectAndCompute(capture, None)
    if des_m is None or des_c is None or len(kp_m) < 8 or len(kp_c) < 8:
        raise AlignmentFailed("too few features to align the capture")
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(des_m, des_c)
    if len(matches) < 8:
        raise AlignmentFailed("too few matching features to align the capture")
    src = np.array([kp_m[m.queryIdx].pt for m in matches], np.float32).reshape(-1, 1, 2)
    dst = np.array([kp_c[m.trainIdx].pt for m in matches], np.float32).reshape(-1, 1, 2)
    matrix, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC)
    if matrix is None or inliers is None or int(inliers.sum()) < 8:
        raise AlignmentFailed("the features of the capture do not match the master's")
    return _pose(np.asarray(matrix, dtype=np.float32), "features")


def _to_full(pose: Pose, scale: float, shape: tuple[int, ...]) -> Pose:
    matrix = pose.matrix.copy()
    matrix[:, 2] /= scale
    centre = (shape[1] / scale / 2, shape[0] / scale / 2)
    return _pose(matrix, pose.method, pose.correlation, centre)


def align(master_small: Gray, capture_small: Gray, scale: float, limits: Alignment) -> Pose:
    """Align reduced images (both at `scale`); answers the full-scale pose."""
    shape = master_small.shape
    if limits.method == "none":
        return _pose(identity(), "none")
    if limits.method == "features":
        return _to_full(features(master_small, capture_small), scale, shape)
    start = phase(master_small, capture_small)
    if limits.method == "phase":
        return _to_full(start, scale, shape)
    try:
        found = ecc(master_small, capture_small, start.matrix)
    except cv2.error:
        found = None
    if found is not None and found.correlation is not None:
        full = _to_full(found, scale, shape)
        if found.correlation >= _MIN_CORRELATION and _within(full, limits):
            return full
    # A large pose: ECC started from a shift alone lands in the wrong basin.
    fallback = _to_full(features(master_small, capture_small), scale, shape)
    try:
        refined = ecc(master_small, capture_small, _to_small(fallback.matrix, scale))
    except cv2.error:
        return fallback
    if refined.correlation is not None and refined.correlation >= _MIN_CORRELATION:
        full = _to_full(refined, scale, shape)
        return Pose(full.matrix, "features+ecc", full.shift_px, full.rotation_deg, full.correlation)
    return fallback


def _to_small(matrix: Matrix, scale: float) -> Matrix:
    small = matrix.copy()
    small[:, 2] *= scale
    return small
