"""Thumbnails: every size from ONE reduced-resolution decode (`IMREAD_REDUCED_*`: JPEG decodes
straight to 1/2, 1/4 or 1/8 scale), never a full decode followed by a resize. CPU work only;
callers run it in a worker thread."""

import cv2
import numpy as np

SIZES = (256, 1024)
_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


class ThumbnailError(ValueError):
    pass


def reduction_for(width: int, height: int, largest: int) -> int:
    """The strongest reduction that still leaves the largest thumbnail fully sampled."""
    longest = max(width, height)
    for factor in (8, 4, 2):
        if longest / factor >= largest:
            return factor
    return 1


def make(
    data: bytes, width: int, height: int, sizes: tuple[int, ...] = SIZES
) -> dict[int, tuple[bytes, int, int]]:
    """WebP thumbnails by longest side: {size: (bytes, width, height)}; never upscaled."""
    factor = reduction_for(width, height, max(sizes))
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _REDUCED[factor])
    if image is None:
        raise ThumbnailError("the image cannot be decoded")
    thumbs: dict[int, tuple[bytes, int, int]] = {}
    source_h, source_w = image.shape[:2]
    for size in sizes:
        scale = min(1.0, size / max(source_w, source_h))
        w, h = max(1, round(source_w * scale)), max(1, round(source_h * scale))
        resized = image if scale == 1.0 else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(".webp", resized, [cv2.IMWRITE_WEBP_QUALITY, 80])
        if not ok:
            raise ThumbnailError("WebP encoding failed")
        thumbs[size] = (encoded.tobytes(), w, h)
    return thumbs
