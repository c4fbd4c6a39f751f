"""The image types Loupe stores, told by their magic bytes: one table for the images
service (uploads) and the catalog's legacy importer (data: URLs), so both take the same set.

GIF is recognised only to be named in the refusal; it is not stored.
"""

ACCEPTED = ("image/jpeg", "image/png", "image/webp", "image/tiff", "image/bmp")
ACCEPTED_NAMES = "JPEG, PNG, WebP, TIFF or BMP"
EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/tiff": "tif",
    "image/bmp": "bmp",
}
# Each type with the (offset, bytes) pairs its first bytes must all carry; first match wins.
MAGIC: tuple[tuple[str, tuple[tuple[int, bytes], ...]], ...] = (
    ("image/jpeg", ((0, b"\xff\xd8\xff"),)),
    ("image/png", ((0, b"\x89PNG\r\n\x1a\n"),)),
    ("image/webp", ((0, b"RIFF"), (8, b"WEBP"))),
    ("image/tiff", ((0, b"II*\x00"),)),
    ("image/tiff", ((0, b"MM\x00*"),)),
    ("image/bmp", ((0, b"BM"),)),
    ("image/gif", ((0, b"GIF87a"),)),
    ("image/gif", ((0, b"GIF89a"),)),
)
# Enough of the start of a file for every entry of MAGIC.
SNIFF_BYTES = 16


def content_type(head: bytes) -> str | None:
    """The type the first bytes announce (accepted or not), or None for no known image."""
    for kind, marks in MAGIC:
        if all(head[offset : offset + len(mark)] == mark for offset, mark in marks):
            return kind
    return None


# --- The images bucket's key layout --------------------------------------------------------
# The images service writes these keys; inspection workers read blobs from them and backup
# exports and imports them. Content-addressed: sharded by the first two hex digits.


def image_blob_key(sha256: str) -> str:
    """Where an image's bytes live in the images bucket."""
    return f"blobs/{sha256[:2]}/{sha256}"


def thumbnail_key(sha256: str, size: int) -> str:
    """Where the WebP thumbnail of an image, `size` pixels on its longest side, lives."""
    return f"thumbnails/{sha256[:2]}/{sha256}/{size}.webp"


def status_key(sha256: str) -> str:
    """Where an image's thumbnail status (JSON, with the error text) lives."""
    return f"status/{sha256[:2]}/{sha256}.json"
