"""Thumbnails from one reduced decode, regenerated when missing; Range requests; the batch
existence check."""

import hashlib
import json

import cv2
import httpx
import numpy as np
import pytest
from minio import Minio

from loupe_images.images import storage, thumbnails
from loupe_shared.contracts import subjects
from loupe_shared.kit import s3 as s3kit
from loupe_shared.kit.auth import Role
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.stack import Stack
from tests.conftest import TokenMaker, auth
from tests.images.helpers import events, make_image
from tests.support import eventually


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


def _large_jpeg(seed: int) -> bytes:
    """A 2400 x 1800 photo-like JPEG: more pixels than the large thumbnail waits for."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, 2400, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, 1800, dtype=np.float32)[:, None]
    planes = [np.clip(x * a + y * (1 - a), 0, 255).astype(np.uint8) for a in rng.random(3)]
    image = cv2.merge(planes)
    cv2.circle(image, (1200, 900), int(rng.integers(100, 800)), (20, 40, 200), -1)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return bytes(encoded.tobytes())


def test_a_large_upload_is_answered_with_the_small_thumbnail_and_the_large_one_follows(
    platform: Stack, gateway: httpx.Client, admin_token: str, nats_settings: NatsSettings
) -> None:
    data = _large_jpeg(seed=11)
    sha = hashlib.sha256(data).hexdigest()
    answer = gateway.post("/api/images", content=data, headers=auth(admin_token))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert [t["size"] for t in body["thumbnails"]] == [256]
    assert body["thumbnails_pending"] == [1024]
    # The blob is stored before the answer, the small thumbnail is there too.
    s3 = _s3(platform)
    bucket = platform.settings.images_bucket
    assert s3kit.get_bytes(s3, bucket, storage.blob_key(sha)) == data
    small = gateway.get(
        f"/api/images/{sha}/thumbnail", params={"size": 256}, headers=auth(admin_token)
    )
    assert small.status_code == 200
    assert small.content == s3kit.get_bytes(s3, bucket, storage.thumbnail_key(sha, 256))

    # Asked for at once, the large one is answered (waited for, or made on the spot).
    large = gateway.get(
        f"/api/images/{sha}/thumbnail", params={"size": 1024}, headers=auth(admin_token)
    )
    assert large.status_code == 200
    decoded = cv2.imdecode(np.frombuffer(large.content, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert decoded.shape[:2] == (768, 1024)

    def done() -> bool:
        status = gateway.get(f"/api/images/{sha}/status", headers=auth(admin_token)).json()
        return bool(status["state"] == "done")

    eventually("the large thumbnail recorded", done)
    status = gateway.get(f"/api/images/{sha}/status", headers=auth(admin_token)).json()
    assert sorted(t["size"] for t in status["thumbnails"]) == [256, 1024]
    assert large.content == s3kit.get_bytes(s3, bucket, storage.thumbnail_key(sha, 1024))
    # Announced with the small thumbnail before the answer, then with both.
    announced = [
        sorted(t["size"] for t in event["thumbnails"])
        for event in events(nats_settings, platform.namespace, subjects.IMAGES_STORED)
        if event["sha256"] == sha
    ]
    assert announced == [[256], [256, 1024]]


def test_a_small_upload_is_answered_with_every_thumbnail(
    gateway: httpx.Client, admin_token: str
) -> None:
    data = make_image(".jpg", seed=12, size=(1500, 2000))
    body = gateway.post("/api/images", content=data, headers=auth(admin_token)).json()
    assert sorted(t["size"] for t in body["thumbnails"]) == [256, 1024]
    assert body["thumbnails_pending"] == []


def test_an_upload_whose_large_thumbnail_never_followed_is_finished_when_sent_again(
    platform: Stack, gateway: httpx.Client, admin_token: str
) -> None:
    """The process stopped after answering, before the large thumbnail was stored: the
    status is still pending. The same upload again finishes it."""
    data = make_image(".jpg", seed=13, size=(600, 800))
    sha = hashlib.sha256(data).hexdigest()
    first = gateway.post("/api/images", content=data, headers=auth(admin_token)).json()
    s3 = _s3(platform)
    bucket = platform.settings.images_bucket
    small = [t for t in first["thumbnails"] if t["size"] == 256]
    s3kit.remove(s3, bucket, storage.thumbnail_key(sha, 1024))
    pending = {"state": "pending", "error": None, "thumbnails": small}
    s3kit.put_bytes(s3, bucket, storage.status_key(sha), json.dumps(pending).encode())

    again = gateway.post("/api/images", content=data, headers=auth(admin_token))
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert sorted(t["size"] for t in again.json()["thumbnails"]) == [256, 1024]
    assert again.json()["thumbnails_pending"] == []
    status = gateway.get(f"/api/images/{sha}/status", headers=auth(admin_token)).json()
    assert status["state"] == "done"
    assert s3kit.exists(s3, bucket, storage.thumbnail_key(sha, 1024))


def test_a_thumbnail_deleted_while_its_large_one_follows_leaves_nothing_behind(
    platform: Stack, gateway: httpx.Client, admin_token: str
) -> None:
    data = _large_jpeg(seed=14)
    body = gateway.post("/api/images", content=data, headers=auth(admin_token)).json()
    sha = body["sha256"]
    assert body["thumbnails_pending"] == [1024]
    assert gateway.delete(f"/api/images/{sha}", headers=auth(admin_token)).status_code == 204
    s3 = _s3(platform)
    bucket = platform.settings.images_bucket
    left = list(storage.listing(s3, bucket, f"thumbnails/{sha[:2]}/{sha}/"))
    assert left == []
    assert not s3kit.exists(s3, bucket, storage.status_key(sha))
    assert not s3kit.exists(s3, bucket, storage.blob_key(sha))


def test_every_thumbnail_request_is_authorized_and_checked_alike(
    gateway: httpx.Client, admin_token: str, make_token: TokenMaker
) -> None:
    """The plain request is answered by the route itself, the rest by the declared
    handler: both refuse and answer the same way."""
    data = make_image(".png", seed=15)
    sha = gateway.post("/api/images", content=data, headers=auth(admin_token)).json()["sha256"]
    path = f"/api/images/{sha}/thumbnail"
    viewer = auth(make_token(Role.VIEWER, "thumbnail-viewer"))
    unknown = auth("loupe_" + "0" * 16 + "_" + "x" * 32)
    plain = gateway.get(path, params={"size": 256}, headers=viewer)
    assert plain.status_code == 200
    spelled_otherwise = gateway.get(f"{path}?size=0256", headers=viewer)
    assert spelled_otherwise.status_code == 200
    assert spelled_otherwise.content == plain.content
    for headers in ({}, unknown):
        refusals = [gateway.get(path + query, headers=headers) for query in ("?size=256", "")]
        refusals.append(gateway.get(f"{path}?size=0256", headers=headers))
        assert {r.status_code for r in refusals} == {401}
        assert {r.headers["content-type"] for r in refusals} == {"application/problem+json"}
        assert len({r.json()["detail"] for r in refusals}) == 1
    missing = gateway.get(f"/api/images/{'0' * 64}/thumbnail", headers=viewer)
    assert missing.status_code == 404
