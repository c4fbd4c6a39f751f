"""Decoding and the master image prepared once for every inspection that uses it."""

from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

Gray = NDArray[np.uint8]
# Pixels of the image aligned at (the worker's setting may lower the program's scale).
DEFAULT_ALIGN_PIXELS = 400_000


class UndecodableImage(ValueError):
    """The bytes are not an image OpenCV can read."""


def decode_gray(data: bytes) -> Gray:
    if not data:
        raise UndecodableImage("the image is empty")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None or image.size == 0:
        raise UndecodableImage("the image cannot be decoded (not a PNG, JPEG, BMP, TIFF or WebP)")
    return np.ascontiguousarray(image, dtype=np.uint8)


def align_scale(shape: tuple[int, ...], scale: float, max_pixels: int) -> float:
    """The program's alignment scale, lowered so the reduced image has at most
    `max_pixels` pixels."""
    pixels = shape[0] * shape[1]
    return float(min(scale, (max_pixels / pixels) ** 0.5, 1.0))


def reduce(image: Gray, scale: float) -> Gray:
    if scale >= 1.0:
        return image
    size = (max(8, round(image.shape[1] * scale)), max(8, round(image.shape[0] * scale)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


@dataclass
class RoiReference:
    """What every comparison in one ROI needs from the master: its smoothed grey levels
    and the band of the smoothed levels around each pixel (so a sub-pixel misalignment or
    an interpolated edge is no change)."""

    smooth: Gray
    low: Gray
    high: Gray
    mean: float
    std: float

    @property
    def nbytes(self) -> int:
        return self.smooth.nbytes + self.low.nbytes + self.high.nbytes


_BAND = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))


def smooth(image: Gray) -> Gray:
    return np.asarray(cv2.GaussianBlur(image, (5, 5), 1.0), dtype=np.uint8)


def roi_reference(master: Gray, rect: tuple[int, int, int, int]) -> RoiReference:
    x, y, w, h = rect
    crop = smooth(master[y : y + h, x : x + w])
    mean, std = cv2.meanStdDev(crop)
    return RoiReference(
        smooth=crop,
        low=np.asarray(cv2.erode(crop, _BAND), dtype=np.uint8),
        high=np.asarray(cv2.dilate(crop, _BAND), dtype=np.uint8),
        mean=float(mean[0, 0]),
        std=float(std[0, 0]),
    )


@dataclass
class PreparedMaster:
    """A decoded master with its reduced copy for alignment and, filled as tools ask, the
    references of its ROIs. Shared by concurrent inspections: entries are only added."""

    sha256: str
    gray: Gray
    max_align_pixels: int = DEFAULT_ALIGN_PIXELS
    _reduced: dict[float, Gray] = field(default_factory=dict)
    _rois: dict[tuple[int, int, int, int], RoiReference] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.gray.shape[0]), int(self.gray.shape[1])

    def reduced(self, scale: float) -> Gray:
        found = self._reduced.get(scale)
        if found is None:
            found = self._reduced[scale] = reduce(self.gray, scale)
        return found

    def roi(self, rect: tuple[int, int, int, int]) -> RoiReference:
        found = self._rois.get(rect)
        if found is None:
            found = self._rois[rect] = roi_reference(self.gray, rect)
        return found

    @property
    def nbytes(self) -> int:
        return (
            self.gray.nbytes
            + sum(r.nbytes for r in self._reduced.values())
            + sum(r.nbytes for r in self._rois.values())
        )
