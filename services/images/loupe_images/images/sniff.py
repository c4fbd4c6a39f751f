"""Image type and dimensions from the first bytes, before anything is decoded: a
decompression bomb is refused by its declared size, not discovered by running out of memory."""

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class Header:
    content_type: str
    width: int
    height: int


class NotAnImage(ValueError):
    pass


def content_type(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[:2] == b"BM":
        return "image/bmp"
    return None


def _png(head: bytes) -> tuple[int, int]:
    if head[12:16] != b"IHDR":
        raise NotAnImage("PNG without IHDR")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _jpeg(data: bytes) -> tuple[int, int]:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            index += 1
            continue
        marker = data[index + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            index += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + length
    raise NotAnImage("JPEG without a frame header")


def _webp(head: bytes) -> tuple[int, int]:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    raise NotAnImage("unknown WebP chunk")


def _bmp(head: bytes) -> tuple[int, int]:
    width, height = struct.unpack("<ii", head[18:26])
    return abs(width), abs(height)


def _tiff(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack(order + "I", data[4:8])[0]
    if offset + 2 > len(data):
        raise NotAnImage("TIFF directory beyond the first bytes")
    count = struct.unpack(order + "H", data[offset : offset + 2])[0]
    found: dict[int, int] = {}
    for i in range(count):
        entry = data[offset + 2 + 12 * i : offset + 14 + 12 * i]
        if len(entry) < 12:
            break
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            fmt = "H" if kind == 3 else "I"
            found[tag] = struct.unpack(order + fmt, entry[8 : 8 + struct.calcsize(fmt)])[0]
    if 256 not in found or 257 not in found:
        raise NotAnImage("TIFF without width and height")
    return found[256], found[257]


def read_header(head: bytes) -> Header:
    """Type and size from the first bytes (64 KiB is enough for the formats accepted)."""
    kind = content_type(head)
    if kind is None:
        raise NotAnImage("not a JPEG, PNG, WebP, TIFF or BMP image")
    try:
        parse = {
            "image/png": _png,
            "image/jpeg": _jpeg,
            "image/webp": _webp,
            "image/bmp": _bmp,
            "image/tiff": _tiff,
        }
        width, height = parse[kind](head)
    except (struct.error, IndexError) as exc:
        raise NotAnImage(f"truncated {kind} header") from exc
    if width <= 0 or height <= 0:
        raise NotAnImage(f"{kind} declares an empty image")
    return Header(kind, width, height)
