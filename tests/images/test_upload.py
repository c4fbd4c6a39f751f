"""Uploads through the gateway: stored once by hash, checked before storing, served immutable,
announced to the catalog."""

import hashlib
from typing import Any

import httpx
import pytest

from loupe_shared.kit.auth import Role
from tests.conftest import TokenMaker, auth
from tests.images.helpers import make_image, png_claiming
from tests.support import eventually


@pytest.fixture(scope="module")
def engineer(make_token: TokenMaker) -> dict[str, str]:
    return auth(make_token(Role.ENGINEER, "images-engineer"))


def test_upload_serve_and_dedup(gateway: httpx.Client, engineer: dict[str, str]) -> None:
    data = make_image(".png")
    sha = hashlib.sha256(data).hexdigest()
    created = gateway.post(
        "/api/images",
        content=data,
        params={"kind": "master", "filename": "../../etc/passwd\\x.png", "tags": ["tray"]},
        headers={**engineer, "Content-Type": "image/png", "X-Content-SHA256": sha},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["sha256"] == sha
    assert body["duplicate"] is False
    assert (body["width"], body["height"], body["content_type"]) == (128, 96, "image/png")
    assert "/" not in body["filename"]
    assert "\\" not in body["filename"]

    served = gateway.get(f"/api/images/{sha}", headers=engineer)
    assert served.content == data
    assert served.headers["etag"] == f'"{sha}"'
    assert "immutable" in served.headers["cache-control"]
    assert (
        gateway.get(
            f"/api/images/{sha}", headers={**engineer, "If-None-Match": f'"{sha}"'}
        ).status_code
        == 304
    )
    head = gateway.head(f"/api/images/{sha}", headers=engineer)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(data))

    again = gateway.post(
        "/api/images", content=data, headers={**engineer, "Content-Type": "image/png"}
    )
    assert again.status_code == 200
    assert again.json()["duplicate"] is True

    eventually(
        "catalog record from images.stored",
        lambda: gateway.get(f"/api/image-records/{sha}", headers=engineer).status_code == 200,
        timeout_s=10,
    )


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (make_image(".png", seed=1), {"X-Content-SHA256": "0" * 64}, 400),
        (b"GIF89a not accepted here", {}, 415),
        (make_image(".jpg", seed=2), {"Content-Type": "image/png"}, 422),
        (make_image(".png", seed=3)[:200], {}, 422),
        (png_claiming(50_000, 50_000), {}, 413),
        (b"", {}, 422),
    ],
    ids=["sha-mismatch", "not-an-image", "type-lies", "truncated", "bomb", "empty"],
)
def test_bad_uploads_store_nothing(
    gateway: httpx.Client,
    engineer: dict[str, str],
    content: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    answer = gateway.post("/api/images", content=content, headers={**engineer, **headers})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    sha = hashlib.sha256(content).hexdigest()
    assert gateway.get(f"/api/images/{sha}/metadata", headers=engineer).status_code == 404


def test_viewer_cannot_upload(gateway: httpx.Client, make_token: TokenMaker) -> None:
    viewer = auth(make_token(Role.VIEWER, "images-viewer"))
    assert gateway.post("/api/images", content=make_image(), headers=viewer).status_code == 403


def test_multipart_upload(gateway: httpx.Client, engineer: dict[str, str]) -> None:
    data = make_image(".jpg", seed=21)
    sha = hashlib.sha256(data).hexdigest()
    answer = gateway.post(
        "/api/images",
        files={"file": ("part.jpg", data, "image/jpeg")},
        data={"kind": "capture", "line_id": "line-7", "tags": ["a", "b"]},
        headers=engineer,
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["sha256"], body["kind"], body["line_id"], body["tags"], body["filename"]) == (
        sha,
        "capture",
        "line-7",
        ["a", "b"],
        "part.jpg",
    )
    assert gateway.get(f"/api/images/{sha}", headers=engineer).content == data


@pytest.mark.parametrize(
    ("files", "data", "status"),
    [
        (
            {
                "first": ("a.png", make_image(seed=22), "image/png"),
                "second": ("b.png", make_image(seed=23), "image/png"),
            },
            {},
            400,
        ),
        (None, {"kind": "master"}, 422),
        ({"file": ("a.png", make_image(seed=24), "image/png")}, {"kind": "overlay"}, 422),
        ({"file": ("a.png", make_image(seed=25), "image/jpeg")}, {}, 422),
    ],
    ids=["two-files", "no-file", "bad-kind", "part-type-lies"],
)
def test_bad_multipart_uploads(
    gateway: httpx.Client,
    engineer: dict[str, str],
    files: dict[str, Any] | None,
    data: dict[str, str],
    status: int,
) -> None:
    if files is None:
        answer = gateway.post(
            "/api/images",
            content=(
                b'--x\r\nContent-Disposition: form-data; name="kind"\r\n\r\nmaster\r\n--x--\r\n'
            ),
            headers={**engineer, "Content-Type": "multipart/form-data; boundary=x"},
        )
    else:
        answer = gateway.post("/api/images", files=files, data=data, headers=engineer)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
