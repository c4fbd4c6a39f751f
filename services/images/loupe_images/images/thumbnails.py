"""Thumbnails: every size from ONE reduced-resolution decode (`IMREAD_REDUCED_*`: JPEG decodes
straight to 1/2, 1/4 or 1/8 scale), never a full decode followed by a resize. Sizes are
resized largest first, each smaller one from the one before it (the 256 px thumbnail from the
1024 px one: a sixteenth of the pixels to average). CPU work only; callers run it in a worker
thread."""

from typing import Any

import cv2
import numpy as np

SIZES = (256, 1024)
WEBP_QUALITY = 80
_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


class ThumbnailError(ValueError):
    pass


class Undecodable(ThumbnailError):
    pass


def reduction_for(width: int, height: int, largest: int) -> int:
    """The strongest reduction that still leaves the largest thumbnail fully sampled."""
    longest = max(width, height)
    for factor in (8, 4, 2):
        if longest / factor >= largest:
            return factor
    return 1


def scaled(data: bytes, width: int, height: int, sizes: tuple[int, ...] = SIZES) -> dict[int, Any]:
    """Each size by longest side as pixels, not yet encoded: {size: BGR array}; never
    upscaled. Decoding walks the whole compressed stream, so an image that is truncated or
    corrupt raises `Undecodable`."""
    factor = reduction_for(width, height, max(sizes))
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _REDUCED[factor])
    if image is None:
        raise Undecodable("the image cannot be decoded")
    out: dict[int, Any] = {}
    for size in sorted(sizes, reverse=True):
        source_h, source_w = image.shape[:2]
        scale = min(1.0, size / max(source_w, source_h))
        if scale < 1.0:
            w, h = max(1, round(source_w * scale)), max(1, round(source_h * scale))
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        out[size] = image
    return out


def encode(image: Any) -> tuple[bytes, int, int]:
    """One thumbnail as WebP: (bytes, width, height)."""
    ok, encoded = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, WEBP_QUALITY])
    if not ok:
        raise ThumbnailError("WebP encoding failed")
    height, width = image.shape[:2]
    return encoded.tobytes(), width, height


def make(
    data: bytes, width: int, height: int, sizes: tuple[int, ...] = SIZES
) -> dict[int, tuple[bytes, int, int]]:
    """WebP thumbnails by longest side: {size: (bytes, width, height)}; never upscaled."""
    made = scaled(data, width, height, sizes)
    return {size: encode(made[size]) for size in sorted(made)}
