"""Compare an aligned capture with the master in one ROI.

Brightness and contrast are matched to the master's in the ROI; a pixel is changed when its
smoothed grey level leaves the band the master's smoothed levels span around it by more than
the threshold. The threshold adapts to the comparison's own noise: it is at least
`NOISE_FACTOR` robust standard deviations of the plain difference, so a noisy camera does not
reject good parts and a clean one keeps the program's threshold."""

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from loupe_inspect.pipeline.images import Gray, RoiReference, smooth

NOISE_FACTOR = 4.0
# The noise estimate reads every STRIDE-th pixel of each STRIDE-th row.
STRIDE = 3
_CLOSE = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


@dataclass(frozen=True)
class Blob:
    x: int
    y: int
    width: int
    height: int
    area: int
    # The largest excess over the band, in grey levels.
    peak: float


@dataclass(frozen=True)
class Comparison:
    changed: NDArray[np.uint8]  # 255 where changed (after closing), 0 elsewhere
    excess: Gray  # grey levels outside the master's band
    threshold: float
    noise: float
    similarity: float


def _median(values: Gray) -> float:
    hist = cv2.calcHist([values], [0], None, [256], [0, 256]).ravel()
    cumulative = np.cumsum(hist)
    return float(np.searchsorted(cumulative, cumulative[-1] / 2))


def match_levels(capture: Gray, reference: RoiReference) -> Gray:
    """The capture with its mean and contrast matched to the master's in this ROI."""
    mean, std = cv2.meanStdDev(capture[::STRIDE, ::STRIDE])
    c_mean, c_std = float(mean[0, 0]), float(std[0, 0])
    gain = reference.std / c_std if c_std > 1e-3 and reference.std > 1e-3 else 1.0
    gain = float(np.clip(gain, 0.5, 2.0))
    offset = reference.mean - gain * c_mean
    lut = np.clip(np.arange(256, dtype=np.float32) * gain + offset, 0, 255)
    return np.asarray(cv2.LUT(capture, lut.astype(np.uint8)), dtype=np.uint8)


_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
# How much of the sensor noise the smoothing lets through (a Gaussian of sigma 1: 1/(2 sqrt(pi))).
_SMOOTHED_NOISE = 0.28


def sensor_noise(image: Gray) -> float:
    """The standard deviation of the image's noise (Immerkaer's operator, with a median so
    edges and a changed region do not count)."""
    sample = np.ascontiguousarray(image[::STRIDE, ::STRIDE]) if min(image.shape) > 96 else image
    response = cv2.filter2D(sample, cv2.CV_32F, _NOISE_KERNEL)
    magnitude = np.asarray(np.minimum(np.abs(response), 255), dtype=np.uint8)
    return 1.4826 * _median(magnitude) / 6.0


def correlation(a: Gray, b: Gray) -> float:
    """Normalised cross-correlation of two same-sized images (on a sample of pixels)."""
    x = a[::STRIDE, ::STRIDE].astype(np.float32).ravel()
    y = b[::STRIDE, ::STRIDE].astype(np.float32).ravel()
    x -= x.mean()
    y -= y.mean()
    norm = float(np.sqrt(float(x @ x) * float(y @ y)))
    return float(x @ y) / norm if norm > 0 else 1.0


def compare(
    capture: Gray, reference: RoiReference, threshold: float, valid: Gray | None = None
) -> Comparison:
    """`capture` is the aligned ROI; `valid` (255/0) marks pixels the capture covers."""
    matched = match_levels(capture, reference)
    levelled = smooth(matched)
    noise = sensor_noise(matched) * _SMOOTHED_NOISE
    effective = max(threshold, NOISE_FACTOR * noise)
    excess = cv2.max(cv2.subtract(levelled, reference.high), cv2.subtract(reference.low, levelled))
    _, changed = cv2.threshold(excess, effective, 255, cv2.THRESH_BINARY)
    if valid is not None:
        changed = cv2.bitwise_and(changed, valid)
    changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, _CLOSE)
    similarity = correlation(levelled, reference.smooth)
    return Comparison(
        changed=np.asarray(changed, dtype=np.uint8),
        excess=np.asarray(excess, dtype=np.uint8),
        threshold=effective,
        noise=noise,
        similarity=similarity,
    )


def blobs(changed: NDArray[np.uint8], excess_of: Gray | None, min_area: int) -> list[Blob]:
    """Connected blobs of at least `min_area` pixels, largest first."""
    if cv2.countNonZero(changed) < min_area:
        return []
    # Labelled only where something changed (a good part's mask is mostly empty).
    ox, oy, w, h = cv2.boundingRect(changed)
    window = changed[oy : oy + h, ox : ox + w]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(window, connectivity=8)
    found: list[Blob] = []
    for label in range(1, count):
        x, y, bw, bh, area = (int(v) for v in stats[label])
        if area < min_area:
            continue
        peak = 0.0
        if excess_of is not None:
            pixels = labels[y : y + bh, x : x + bw] == label
            peak = float(excess_of[oy + y : oy + y + bh, ox + x : ox + x + bw][pixels].max())
        found.append(Blob(ox + x, oy + y, bw, bh, area, peak))
    found.sort(key=lambda blob: blob.area, reverse=True)
    return found
