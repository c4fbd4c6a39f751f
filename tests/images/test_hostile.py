"""Hostile input against every images route, through the gateway: each answer is a 4xx
problem document, never a 5xx, and nothing is stored."""

import hashlib
import struct
import uuid
from typing import Any

import httpx
import pytest

from loupe_shared.kit.auth import Role
from tests.conftest import TokenMaker, auth
from tests.images.helpers import make_image, png_claiming

NUL = "\u0000"
TOO_BIG = str(2**64)


@pytest.fixture(scope="module")
def admin(admin_token: str) -> dict[str, str]:
    return auth(admin_token)


@pytest.fixture(scope="module")
def engineer(make_token: TokenMaker) -> dict[str, str]:
    return auth(make_token(Role.ENGINEER, "hostile-engineer"))


def fresh_png() -> bytes:
    return make_image(".png", seed=uuid.uuid4().int % 2**32, size=(24, 32))


def assert_problem(answer: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert answer.status_code in statuses, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["status"] == answer.status_code
    return body


def assert_not_stored(gateway: httpx.Client, headers: dict[str, str], data: bytes) -> None:
    sha = hashlib.sha256(data).hexdigest()
    assert gateway.get(f"/api/images/{sha}/metadata", headers=headers).status_code == 404


QUERY_OPTIONS = [
    ("line_id", "-starts-with-a-dash"),
    ("line_id", "line 1"),
    ("line_id", "a" * 101),
    ("line_id", f"line{NUL}1"),
    ("line_id", "../../etc"),
    ("kind", "thumbnail"),
    ("filename", f"part{NUL}.png"),
    ("filename", "x" * 501),
    ("tags", f"tray{NUL}"),
    ("tags", "-dash"),
    ("tags", "t" * 65),
    ("tags", ["t"] * 33),
]


@pytest.mark.parametrize(("name", "value"), QUERY_OPTIONS)
def test_upload_query_options_are_checked(
    gateway: httpx.Client, engineer: dict[str, str], name: str, value: Any
) -> None:
    data = fresh_png()
    answer = gateway.post(
        "/api/images",
        content=data,
        params={name: value},
        headers={**engineer, "Content-Type": "image/png"},
    )
    body = assert_problem(answer, 422)
    assert body["errors"][0]["field"].startswith(f"query:{name}")
    assert_not_stored(gateway, engineer, data)


@pytest.mark.parametrize(("name", "value"), QUERY_OPTIONS)
def test_upload_form_fields_are_checked_like_the_query(
    gateway: httpx.Client, engineer: dict[str, str], name: str, value: Any
) -> None:
    data = fresh_png()
    answer = gateway.post(
        "/api/images",
        files={"file": ("part.png", data, "image/png")},
        data={name: value},
        headers=engineer,
    )
    body = assert_problem(answer, 422)
    assert body["errors"][0]["field"].startswith(f"form:{name}")
    assert_not_stored(gateway, engineer, data)


def test_a_form_field_passes_the_pattern_the_results_query_checks(
    gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    data = fresh_png()
    answer = gateway.post(
        "/api/images",
        files={"file": ("part.png", data, "image/png")},
        data={"line_id": "line-7:a.b_c", "kind": "capture", "tags": ["tray", "lot:42"]},
        headers=engineer,
    )
    assert answer.status_code == 201, answer.text
    assert (answer.json()["line_id"], answer.json()["tags"]) == ("line-7:a.b_c", ["tray", "lot:42"])
    listed = gateway.get(
        "/api/results", params={"line_id": answer.json()["line_id"]}, headers=engineer
    )
    assert listed.status_code == 200, listed.text


BAD_BODIES = {
    "empty": (b"", 422),
    "random bytes": (b"\x00\x01garbage" * 50, 415),
    "gif": (b"GIF89a" + struct.pack("<HH", 8, 8) + b"\x00" * 40, 415),
    "png signature only": (b"\x89PNG\r\n\x1a\n", 415),
    "png of no pixels": (png_claiming(0, 0), 415),
    "png bomb": (png_claiming(100_000, 100_000), 413),
    "jpeg start only": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", 415),
    "jpeg segment running off the end": (b"\xff\xd8\xff\xe2\xff\xff" + b"\x00" * 100, 415),
    # Made to keep a header parser reading byte by byte: given up on after a bounded scan.
    "jpeg of fill bytes": (b"\xff\xd8" + b"\xff" * (2 * 1024 * 1024), 415),
    "jpeg of junk after a segment": (b"\xff\xd8\xff\xe0\x00\x04" + b"\x00" * 2**21, 415),
    "tiff directory beyond the end": (b"II*\x00" + struct.pack("<I", 2**31) + b"\x00" * 64, 415),
    "tiff directory of 65535 entries": (
        b"II*\x00" + struct.pack("<IH", 8, 65535) + b"\x00" * 64,
        415,
    ),
    "webp chunk unknown": (b"RIFF\x20\x00\x00\x00WEBPXXXX" + b"\x00" * 32, 415),
    "bmp header only": (b"BM" + b"\x00" * 10, 415),
    "png header, body cut off": (fresh_png()[:60], 422),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bodies_that_are_not_storable_images(
    gateway: httpx.Client, engineer: dict[str, str], case: str
) -> None:
    data, status = BAD_BODIES[case]
    answer = gateway.post(
        "/api/images", content=data, headers={**engineer, "Content-Type": "image/png"}
    )
    assert_problem(answer, status)
    assert_not_stored(gateway, engineer, data)


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=" + "b" * 300,
        'multipart/form-data; boundary="unterminated',
    ],
)
def test_multipart_without_a_usable_boundary(
    gateway: httpx.Client, engineer: dict[str, str], content_type: str
) -> None:
    data = fresh_png()
    body = b"--b\r\nContent-Disposition: form-data; name=file\r\n\r\n" + data + b"\r\n--b--\r\n"
    answer = gateway.post(
        "/api/images", content=body, headers={**engineer, "Content-Type": content_type}
    )
    assert_problem(answer, 400, 422)
    assert_not_stored(gateway, engineer, data)


@pytest.mark.parametrize(
    "params",
    [
        {"grace_s": "1e12"},
        {"grace_s": "1e300"},
        {"grace_s": "inf"},
        {"grace_s": "nan"},
        {"grace_s": "-1"},
        {"grace_s": TOO_BIG + "0" * 300},
        {"grace_s": f"1{NUL}"},
        {"dry_run": "perhaps"},
    ],
)
def test_garbage_collection_bounds(
    gateway: httpx.Client, admin: dict[str, str], params: dict[str, str]
) -> None:
    assert_problem(gateway.post("/api/images/gc", params=params, headers=admin), 422)


def test_a_grace_of_a_century_runs(gateway: httpx.Client, admin: dict[str, str]) -> None:
    answer = gateway.post("/api/images/gc", params={"grace_s": 3e9, "dry_run": True}, headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json()["collected"] == 0


@pytest.fixture(scope="module")
def stored(gateway: httpx.Client, admin: dict[str, str]) -> str:
    answer = gateway.post(
        "/api/images", content=fresh_png(), headers={**admin, "Content-Type": "image/png"}
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["sha256"])


BAD_SHAS = ["A" * 64, "g" * 64, "a" * 63, "a" * 65, "%00" + "a" * 61, "..%2F..%2Fetc"]


@pytest.mark.parametrize("sha", BAD_SHAS)
@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("HEAD", ""),
        ("GET", "/metadata"),
        ("GET", "/status"),
        ("GET", "/thumbnail"),
        ("DELETE", ""),
    ],
)
def test_paths_that_are_not_hashes(
    gateway: httpx.Client, admin: dict[str, str], sha: str, method: str, suffix: str
) -> None:
    answer = gateway.request(method, f"/api/images/{sha}{suffix}", headers=admin)
    assert 400 <= answer.status_code < 500, answer.text
    if method != "HEAD":
        assert answer.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("size", ["0", "-1", "512", TOO_BIG, "1e3", f"256{NUL}", "abc"])
def test_thumbnail_sizes(
    gateway: httpx.Client, admin: dict[str, str], stored: str, size: str
) -> None:
    answer = gateway.get(f"/api/images/{stored}/thumbnail", params={"size": size}, headers=admin)
    assert_problem(answer, 422)


@pytest.mark.parametrize(
    ("range_", "status"),
    [
        (f"bytes={TOO_BIG}-", 416),
        (f"bytes=0-{TOO_BIG}", 206),
        (f"bytes=-{TOO_BIG}", 206),
        ("bytes=5-2", 416),
        ("bytes=abc", 200),
        ("bytes=--1", 200),
        ("items=0-1", 200),
        ("bytes=0-1,3-4", 200),
    ],
)
def test_hostile_ranges(
    gateway: httpx.Client, admin: dict[str, str], stored: str, range_: str, status: int
) -> None:
    answer = gateway.get(f"/api/images/{stored}", headers={**admin, "Range": range_})
    assert answer.status_code == status, answer.text


@pytest.mark.parametrize("force", ["perhaps", TOO_BIG, NUL])
def test_delete_flags(
    gateway: httpx.Client, admin: dict[str, str], stored: str, force: str
) -> None:
    answer = gateway.delete(f"/api/images/{stored}", params={"force": force}, headers=admin)
    assert_problem(answer, 422)
    assert gateway.get(f"/api/images/{stored}/metadata", headers=admin).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"sha256": [f"{'a' * 63}{NUL}"]},
        {"sha256": ["a" * 64] * 1001},
        {"sha256": "a" * 64},
        {"sha256": ["a" * 64], "extra": 1},
        {"sha256": [2**70]},
        [],
    ],
)
def test_exists_bodies(gateway: httpx.Client, admin: dict[str, str], body: Any) -> None:
    assert_problem(gateway.post("/api/images/exists", json=body, headers=admin), 422)


def test_exists_body_nested_deeply(gateway: httpx.Client, admin: dict[str, str]) -> None:
    deep = '{"sha256": ' + "[" * 10_000 + "]" * 10_000 + "}"
    answer = gateway.post(
        "/api/images/exists",
        content=deep,
        headers={**admin, "Content-Type": "application/json"},
    )
    assert_problem(answer, 400, 422)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": TOO_BIG},
        {"cursor": NUL},
        {"cursor": "a" * 201},
        {"cursor": "../../blobs/"},
        {"open_only": "perhaps"},
    ],
)
def test_integrity_report_queries(
    gateway: httpx.Client, admin: dict[str, str], params: dict[str, str]
) -> None:
    assert_problem(gateway.get("/api/integrity/report", params=params, headers=admin), 400, 422)


@pytest.mark.parametrize(
    ("part_headers", "tail", "status"),
    [
        (b'Content-Disposition: form-data; name="file"; filename="a\x00.png"', b"--b--", 422),
        (b'Content-Disposition: form-data; name="file"; filename="a.png"', b"", 400),
        # Not the file part: a form field, over the field limit.
        (b"Content-Disposition: form-data; name=file\x00", b"--b--", 413),
    ],
)
def test_multipart_parts_that_are_hostile(
    gateway: httpx.Client, engineer: dict[str, str], part_headers: bytes, tail: bytes, status: int
) -> None:
    data = fresh_png()
    body = b"--b\r\n" + part_headers + b"\r\nContent-Type: image/png\r\n\r\n" + data
    body += b"\r\n" + tail + (b"\r\n" if tail else b"")
    answer = gateway.post(
        "/api/images",
        content=body,
        headers={**engineer, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert_problem(answer, status)
    assert_not_stored(gateway, engineer, data)


def test_too_many_form_fields(gateway: httpx.Client, engineer: dict[str, str]) -> None:
    data = fresh_png()
    answer = gateway.post(
        "/api/images",
        files={"file": ("part.png", data, "image/png")},
        data={"tags": [f"t{i}" for i in range(41)]},
        headers=engineer,
    )
    assert_problem(answer, 413)
    assert_not_stored(gateway, engineer, data)
