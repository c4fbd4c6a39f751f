"""Master images out of `data:` URLs: decoded, typed by their bytes, hashed.

The type is taken from the magic bytes; a data URL whose declared type disagrees is still
imported, as what its bytes are, with a warning. Whether the bytes decode is for the images
service to say when they are uploaded (a dry run only reads the header).
"""

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field

from loupe_shared.contracts import images

_DATA_URL = re.compile(r"^data:([^;,]*)((?:;[^;,]*)*),", re.ASCII)
_BASE64 = re.compile(rb"^[A-Za-z0-9+/]*={0,2}$")


class ImageError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class MasterImage:
    data: bytes
    sha256: str
    content_type: str
    warnings: list[str] = field(default_factory=list)

    @property
    def extension(self) -> str:
        return images.EXTENSIONS[self.content_type]


def _complete(data: bytes, content_type: str) -> bool:
    """Whether the image ends as its format says (a cut-off export loses the end)."""
    if content_type == "image/png":
        return b"IEND" in data[-64:]
    if content_type == "image/jpeg":
        # Encoders may pad after the end-of-image marker, never by much.
        return b"\xff\xd9" in data[-1024:]
    return True


def decode(value: str, max_bytes: int) -> MasterImage:
    """A data URL (or bare base64, as backup files keep images) as an image; raises
    `ImageError` with a reason code: bad_base64, image_too_large, not_an_image,
    unsupported_image_type."""
    declared: str | None = None
    payload = value
    match = _DATA_URL.match(value[:512])
    if value.startswith("data:"):
        if match is None:
            raise ImageError("bad_base64", "not a data: URL (no comma after the media type)")
        params = [p.strip().lower() for p in match.group(2).split(";") if p.strip()]
        if "base64" not in params:
            raise ImageError("bad_base64", "the data: URL is not base64-encoded")
        declared = match.group(1).strip().lower() or None
        payload = value[match.end() :]
    compact = "".join(payload.split())
    # 4 base64 characters carry 3 bytes: a size check before anything is decoded.
    if len(compact) // 4 * 3 > max_bytes + 3:
        raise ImageError(
            "image_too_large",
            f"the image is about {len(compact) // 4 * 3 // (1024 * 1024)} MiB; "
            f"at most {max_bytes // (1024 * 1024)} MiB is migrated",
        )
    raw = compact.encode("ascii", errors="replace")
    if not raw or not _BASE64.match(raw) or len(raw) % 4 == 1:
        raise ImageError("bad_base64", "the image is not valid base64")
    try:
        data = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("bad_base64", "the image is not valid base64") from None
    if len(data) > max_bytes:
        raise ImageError(
            "image_too_large",
            f"the image is {len(data)} bytes; at most {max_bytes} bytes is migrated",
        )
    actual = images.content_type(data[: images.SNIFF_BYTES])
    if actual is None:
        what = f" (declared {declared})" if declared else ""
        raise ImageError("not_an_image", f"the bytes are not an image{what}")
    if actual not in images.ACCEPTED:
        raise ImageError(
            "unsupported_image_type",
            f"{actual} is not stored by Loupe ({images.ACCEPTED_NAMES})",
        )
    if not _complete(data, actual):
        raise ImageError("not_an_image", f"the {actual} image is truncated (its end is missing)")
    warnings = []
    if declared is not None and declared != actual:
        warnings.append(f"declared {declared}, but the bytes are {actual}: stored as {actual}")
    return MasterImage(data, hashlib.sha256(data).hexdigest(), actual, warnings)
