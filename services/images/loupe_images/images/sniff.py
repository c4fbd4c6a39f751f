"""Image type and dimensions from the headers, before anything is decoded: a decompression
bomb is refused by its declared size, not discovered by running out of memory.

The type comes from the shared magic-byte table; the dimensions from the whole spooled upload
(read by seeking, not loaded), since cameras put them anywhere: libtiff writes a TIFF's
directory after the pixels, and a JPEG's frame header follows its APP segments (ICC profiles,
EXIF thumbnails), which can be far longer than any fixed prefix.
"""

from dataclasses import dataclass
from typing import IO

import imagesize  # type: ignore[import-untyped]

from loupe_shared.contracts import images


@dataclass(frozen=True)
class Header:
    content_type: str
    width: int
    height: int


class NotAnImage(ValueError):
    pass


def read_header(spool: IO[bytes]) -> Header:
    """Type and size of the image in `spool` (left at an unspecified position)."""
    spool.seek(0)
    kind = images.content_type(spool.read(images.SNIFF_BYTES))
    if kind is None:
        raise NotAnImage(f"not a {images.ACCEPTED_NAMES} image")
    if kind not in images.ACCEPTED:
        raise NotAnImage(f"{kind} is not stored (only {images.ACCEPTED_NAMES})")
    spool.seek(0)
    # The dimensions as stored: the pixel limit does not care which way up the image is.
    width, height = (int(side) for side in imagesize.get(spool, exif_rotation=False))
    if width < 0 or height < 0:
        raise NotAnImage(f"the {kind} header cannot be read (truncated or corrupt)")
    if width == 0 or height == 0:
        raise NotAnImage(f"{kind} declares an empty image")
    return Header(kind, width, height)
