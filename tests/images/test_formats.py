"""Images as line cameras write them: the size is found wherever the format puts it (a TIFF's
directory after the pixels, a JPEG's frame header after long APP segments), and every
accepted type is stored, thumbnailed and served back unchanged — and taken by the legacy
importer alike."""

import base64
import hashlib
import struct
import uuid

import cv2
import httpx
import numpy as np
import pytest

from loupe_catalog.legacy import images as legacy_images
from loupe_shared.contracts import images as image_types
from loupe_shared.kit.auth import Role
from tests.conftest import TokenMaker, auth

WIDTH, HEIGHT = 320, 240
FIRST_BYTES = 64 * 1024  # what the type and size used to be read from


def _pixels(depth: type[np.uint8] | type[np.uint16] = np.uint8) -> np.ndarray:
    rng = np.random.default_rng(uuid.uuid4().int)
    top = 65535 if depth is np.uint16 else 255
    return rng.integers(0, top, size=(HEIGHT, WIDTH, 3), dtype=depth)


def _encode(ext: str, pixels: np.ndarray, params: tuple[int, ...] = ()) -> bytes:
    ok, encoded = cv2.imencode(ext, pixels, list(params))
    assert ok
    return bytes(encoded.tobytes())


def tiff_directory_last() -> bytes:
    data = _encode(".tiff", _pixels())
    order = "<" if data[:2] == b"II" else ">"
    (directory,) = struct.unpack(order + "I", data[4:8])
    assert directory > FIRST_BYTES  # OpenCV (libtiff) writes the directory after the strips
    return data


def jpeg_with_large_app_segments() -> bytes:
    data = _encode(".jpg", _pixels())
    rng = np.random.default_rng(uuid.uuid4().int)
    # APP2 segments shaped like a chunked ICC profile, of junk: 3 x 64 KiB before the frame.
    segments = b""
    for chunk in range(1, 4):
        junk = rng.integers(0, 0xFF, size=65533 - 14, dtype=np.uint8).tobytes()  # no 0xFF
        payload = b"ICC_PROFILE\x00" + bytes([chunk, 3]) + junk
        segments += b"\xff\xe2" + struct.pack(">H", len(payload) + 2) + payload
    made = data[:2] + segments + data[2:]
    assert made.index(b"\xff\xc0") > FIRST_BYTES
    return made


def sixteen_bit_png() -> bytes:
    data = _encode(".png", _pixels(np.uint16))
    assert data[24] == 16  # IHDR bit depth
    return data


def webp_lossy() -> bytes:
    return _encode(".webp", _pixels(), (cv2.IMWRITE_WEBP_QUALITY, 90))


def webp_lossy_with_scale_bits() -> bytes:
    """A lossy frame whose size fields carry the (ignored) upscaling hint in their top bits."""
    data = bytearray(webp_lossy())
    assert data[12:16] == b"VP8 "
    width, height = struct.unpack("<HH", data[26:30])
    data[26:30] = struct.pack("<HH", width | 0x4000, height | 0x8000)
    return bytes(data)


def webp_lossless() -> bytes:
    return _encode(".webp", _pixels(), (cv2.IMWRITE_WEBP_QUALITY, 101))


def bmp() -> bytes:
    return _encode(".bmp", _pixels())


CASES = {
    "tiff-directory-last": (tiff_directory_last, "image/tiff"),
    "jpeg-large-app-segments": (jpeg_with_large_app_segments, "image/jpeg"),
    "png-16-bit": (sixteen_bit_png, "image/png"),
    "webp-lossy": (webp_lossy, "image/webp"),
    "webp-lossy-scale-bits": (webp_lossy_with_scale_bits, "image/webp"),
    "webp-lossless": (webp_lossless, "image/webp"),
    "bmp": (bmp, "image/bmp"),
}


@pytest.fixture(scope="module")
def engineer(make_token: TokenMaker) -> dict[str, str]:
    return auth(make_token(Role.ENGINEER, "formats-engineer"))


@pytest.mark.parametrize("case", list(CASES))
def test_stored_thumbnailed_and_served_unchanged(
    case: str, gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    make, content_type = CASES[case]
    data = make()
    sha = hashlib.sha256(data).hexdigest()
    created = gateway.post(
        "/api/images",
        content=data,
        params={"kind": "capture", "line_id": "line-formats"},
        headers={**engineer, "Content-Type": content_type},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["content_type"], body["width"], body["height"]) == (content_type, WIDTH, HEIGHT)
    assert sorted(t["size"] for t in body["thumbnails"]) == [256, 1024]

    served = gateway.get(f"/api/images/{sha}", headers=engineer)
    assert served.status_code == 200
    assert served.headers["content-type"] == content_type
    assert served.content == data

    for size in (256, 1024):
        thumb = gateway.get(f"/api/images/{sha}/thumbnail", params={"size": size}, headers=engineer)
        assert thumb.status_code == 200, thumb.text
        assert thumb.headers["content-type"] == "image/webp"
        decoded = cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None
        assert max(decoded.shape[:2]) == min(size, WIDTH)


def test_multipart_upload_of_a_tiff_with_its_directory_last(
    gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    data = tiff_directory_last()
    created = gateway.post(
        "/api/images",
        files={"file": ("camera.tif", data, "image/tiff")},
        data={"kind": "capture", "line_id": "line-formats"},
        headers=engineer,
    )
    assert created.status_code == 201, created.text
    assert (created.json()["width"], created.json()["height"]) == (WIDTH, HEIGHT)


def test_a_gif_is_named_and_refused(gateway: httpx.Client, engineer: dict[str, str]) -> None:
    gif = b"GIF89a" + struct.pack("<HH", 4, 4) + b"\x00" * 32
    refused = gateway.post(
        "/api/images", content=gif, headers={**engineer, "Content-Type": "image/gif"}
    )
    assert refused.status_code == 415
    assert "image/gif" in refused.json()["detail"]


@pytest.mark.parametrize("case", list(CASES))
def test_the_legacy_importer_takes_the_same_set(case: str) -> None:
    make, content_type = CASES[case]
    data = make()
    url = f"data:{content_type};base64," + base64.b64encode(data).decode()
    image = legacy_images.decode(url, max_bytes=8 * 1024 * 1024)
    assert image.content_type == content_type
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert image.warnings == []


def test_one_magic_byte_table() -> None:
    assert image_types.content_type(b"GIF87a" + b"\x00" * 10) == "image/gif"
    assert image_types.content_type(b"RIFF\x00\x00\x00\x00WAVE") is None
    with pytest.raises(legacy_images.ImageError) as refused:
        legacy_images.decode(base64.b64encode(b"GIF89a" + b"\x00" * 30).decode(), 1024)
    assert refused.value.code == "unsupported_image_type"
