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


# Any header is found in a few dozen small reads; a body made to keep the parser scanning
# byte by byte (fill bytes, junk between segments) is given up on after these.
MAX_READS = 20_000
MAX_READ_BYTES = 4 * 1024 * 1024


class _Exhausted(Exception):
    pass


class _Budgeted:
    """The spool as the header parser sees it: seeks are free, reads are counted."""

    def __init__(self, spool: IO[bytes]) -> None:
        self._spool = spool
        self._reads = 0
        self._left = MAX_READ_BYTES

    def read(self, size: int = -1) -> bytes:
        self._reads += 1
        if self._reads > MAX_READS or size < 0 or size > self._left:
            raise _Exhausted
        data = self._spool.read(size)
        self._left -= len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._spool.seek(offset, whence)


def read_header(spool: IO[bytes]) -> Header:
    """Type and size of the image in `spool` (left at an unspecified position)."""
    spool.seek(0)
    head = spool.read(images.SNIFF_BYTES)
    kind = images.content_type(head)
    if kind is None:
        raise NotAnImage(f"not a {images.ACCEPTED_NAMES} image")
    if kind not in images.ACCEPTED:
        raise NotAnImage(f"{kind} is not stored (only {images.ACCEPTED_NAMES})")
    spool.seek(0)
    # The dimensions as stored: the pixel limit does not care which way up the image is.
    width, height = (int(side) for side in imagesize.get(_Budgeted(spool), exif_rotation=False))
    if width < 0 or height < 0:
        raise NotAnImage(f"the {kind} header cannot be read (truncated or corrupt)")
    if kind == "image/webp" and head[12:16] == b"VP8 ":
        # A lossy frame's size is 14 bits; the 2 above are an upscaling hint, not size.
        width, height = width & 0x3FFF, height & 0x3FFF
    if width == 0 or height == 0:
        raise NotAnImage(f"{kind} declares an empty image")
    return Header(kind, width, height)
