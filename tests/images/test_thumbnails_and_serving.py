"""Thumbnails from one reduced decode, regenerated when missing; Range requests; the batch
existence check."""

import hashlib

import cv2
import httpx
import numpy as np
import pytest
from minio import Minio

from loupe_images.images import storage, thumbnails
from loupe_stack.stack import Stack
from tests.conftest import auth
from tests.images.helpers import make_image


@pytest.mark.parametrize(
    ("size", "factor"),
    [((800, 600), 1), ((2100, 1500), 2), ((4000, 3000), 2), ((4200, 3000), 4), ((9000, 6000), 8)],
)
def test_reduction_keeps_the_largest_thumbnail_fully_sampled(
    size: tuple[int, int], factor: int
) -> None:
    assert thumbnails.reduction_for(*size, largest=1024) == factor


def test_thumbnails_are_webp_by_longest_side() -> None:
    data = make_image(".jpg", seed=5, size=(1200, 1600))
    made = thumbnails.make(data, 1600, 1200)
    for size, (webp, width, height) in made.items():
        assert webp[:4] == b"RIFF"
        assert webp[8:12] == b"WEBP"
        decoded = cv2.imdecode(np.frombuffer(webp, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None
        assert decoded.shape[:2] == (height, width)
        assert max(width, height) == size
    small = thumbnails.make(make_image(".png", seed=6, size=(60, 80)), 80, 60)
    assert small[1024][1:] == (80, 60)  # never upscaled


def _s3(platform: Stack) -> Minio:
    return platform.endpoints.s3()


def test_upload_makes_thumbnails_and_a_missing_one_is_regenerated(
    platform: Stack, gateway: httpx.Client, admin_token: str
) -> None:
    data = make_image(".jpg", seed=7, size=(1500, 2000))
    sha = hashlib.sha256(data).hexdigest()
    body = gateway.post("/api/images", content=data, headers=auth(admin_token)).json()
    assert sorted(t["size"] for t in body["thumbnails"]) == [256, 1024]
    status = gateway.get(f"/api/images/{sha}/status", headers=auth(admin_token)).json()
    assert status["state"] == "done"
    assert status["error"] is None

    thumb = gateway.get(
        f"/api/images/{sha}/thumbnail", params={"size": 256}, headers=auth(admin_token)
    )
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/webp"
    assert thumb.headers["etag"] == f'"{sha}-256"'
    cached = gateway.get(
        f"/api/images/{sha}/thumbnail",
        params={"size": 256},
        headers={**auth(admin_token), "If-None-Match": f'"{sha}-256"'},
    )
    assert cached.status_code == 304

    s3 = _s3(platform)
    s3.remove_object(platform.settings.images_bucket, storage.thumbnail_key(sha, 1024))
    again = gateway.get(
        f"/api/images/{sha}/thumbnail", params={"size": 1024}, headers=auth(admin_token)
    )
    assert again.status_code == 200
    decoded = cv2.imdecode(np.frombuffer(again.content, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert max(decoded.shape[:2]) == 1024
    s3.stat_object(
        platform.settings.images_bucket, storage.thumbnail_key(sha, 1024)
    )  # stored again

    assert (
        gateway.get(
            f"/api/images/{sha}/thumbnail", params={"size": 300}, headers=auth(admin_token)
        ).status_code
        == 422
    )


def test_range_requests(gateway: httpx.Client, admin_token: str) -> None:
    data = make_image(".png", seed=8)
    sha = hashlib.sha256(data).hexdigest()
    gateway.post("/api/images", content=data, headers=auth(admin_token)).raise_for_status()
    first = gateway.get(f"/api/images/{sha}", headers={**auth(admin_token), "Range": "bytes=0-9"})
    assert first.status_code == 206
    assert first.content == data[:10]
    assert first.headers["content-range"] == f"bytes 0-9/{len(data)}"
    tail = gateway.get(f"/api/images/{sha}", headers={**auth(admin_token), "Range": "bytes=-5"})
    assert tail.content == data[-5:]
    beyond = gateway.get(
        f"/api/images/{sha}", headers={**auth(admin_token), "Range": f"bytes={len(data)}-"}
    )
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"


def test_batch_existence_check(gateway: httpx.Client, admin_token: str) -> None:
    data = make_image(".png", seed=9)
    sha = hashlib.sha256(data).hexdigest()
    gateway.post("/api/images", content=data, headers=auth(admin_token)).raise_for_status()
    other = hashlib.sha256(b"never uploaded").hexdigest()
    answer = gateway.post(
        "/api/images/exists", json={"sha256": [sha, other, sha]}, headers=auth(admin_token)
    )
    assert answer.json() == {"present": [sha], "missing": [other]}
    too_many = gateway.post(
        "/api/images/exists", json={"sha256": [other] * 1001}, headers=auth(admin_token)
    )
    assert too_many.status_code == 422
    bad = gateway.post("/api/images/exists", json={"sha256": ["XYZ"]}, headers=auth(admin_token))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"].startswith("body:sha256.0")
