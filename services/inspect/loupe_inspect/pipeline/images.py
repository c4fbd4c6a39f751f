"""Decoding and the master image prepared once for every inspection that uses it."""

from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

Gray = NDArray[np.uint8]


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
    """A decoded master with its reduced copies for alignment and, filled as tools ask, the
    references of its ROIs and their mean grey levels. Shared by concurrent inspections:
    entries are only added, and only while they take at most `EXTRA_FOOTPRINT` times the
    master's own size (beyond that, say 64 tools with ROIs of their own, references are made
    for each inspection)."""

    sha256: str
    gray: Gray
    _reduced: dict[float, Gray] = field(default_factory=dict)
    _rois: dict[tuple[int, int, int, int], RoiReference] = field(default_factory=dict)
    _means: dict[tuple[int, int, int, int], float] = field(default_factory=dict)
    _extra_bytes: int = 0

    # An ROI over the whole image takes three times the master (smoothed, low, high); one
    # more leaves room for the reduced copies, so the commonest program keeps its reference
    # instead of making it again (a tenth of an inspection) for every capture.
    EXTRA_FOOTPRINT = 4

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.gray.shape[0]), int(self.gray.shape[1])

    def _room(self, nbytes: int) -> bool:
        return self._extra_bytes + nbytes <= self.EXTRA_FOOTPRINT * self.gray.nbytes

    def reduced(self, scale: float) -> Gray:
        found = self._reduced.get(scale)
        if found is None:
            found = reduce(self.gray, scale)
            if self._room(found.nbytes):
                self._reduced[scale] = found
                self._extra_bytes += found.nbytes
        return found

    def roi(self, rect: tuple[int, int, int, int]) -> RoiReference:
        found = self._rois.get(rect)
        if found is None:
            found = roi_reference(self.gray, rect)
            if self._room(found.nbytes):
                self._rois[rect] = found
                self._extra_bytes += found.nbytes
        return found

    def mean(self, rect: tuple[int, int, int, int]) -> float:
        """The master's mean grey level in `rect`."""
        found = self._means.get(rect)
        if found is None:
            x, y, w, h = rect
            found = float(cv2.mean(self.gray[y : y + h, x : x + w])[0])
            self._means[rect] = found
        return found

    @property
    def nbytes(self) -> int:
        return self.gray.nbytes + self._extra_bytes
