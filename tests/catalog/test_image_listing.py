"""The paged image listing (`GET /api/image-records`): the catalog's records of the stored
images, newest first, by kind, line and time; cursors walk every record once; hostile
filters and cursors are a 422."""

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from loupe_shared.kit.auth import Role
from tests.conftest import TokenMaker, auth
from tests.images.helpers import make_image
from tests.support import eventually


def _listed(gateway: httpx.Client, headers: dict[str, str], **params: Any) -> list[str]:
    """Every sha256 the listing answers, walking its pages."""
    seen: list[str] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = gateway.get("/api/image-records", params=query, headers=headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        seen += [item["sha256"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_records_are_listed_newest_first_by_kind_and_line(
    gateway: httpx.Client, make_token: TokenMaker
) -> None:
    engineer = auth(make_token(Role.ENGINEER, "listing-engineer"))
    viewer = auth(make_token(Role.VIEWER, "listing-viewer"))
    line_id = f"line-{uuid.uuid4().hex[:8]}"
    seed = random.randrange(1 << 30)
    uploaded: list[tuple[str, str]] = []
    for n, kind in enumerate(["capture", "capture", "master", "capture", "master"]):
        answer = gateway.post(
            "/api/images",
            files={"file": ("a.png", make_image(seed=seed + n), "image/png")},
            data={"kind": kind, "line_id": line_id},
            headers=engineer,
        )
        assert answer.status_code == 201, answer.text
        uploaded.append((answer.json()["sha256"], kind))
    eventually(
        "every image recorded",
        lambda: len(_listed(gateway, viewer, line_id=line_id)) == len(uploaded),
    )
    everything = gateway.get(
        "/api/image-records", params={"line_id": line_id}, headers=viewer
    ).json()["items"]
    seen_at = [item["first_seen_at"] for item in everything]
    assert seen_at == sorted(seen_at, reverse=True)

    paged = _listed(gateway, viewer, line_id=line_id, limit=2)
    assert sorted(paged) == sorted(sha for sha, _ in uploaded)
    assert len(paged) == len(set(paged))
    captures = _listed(gateway, viewer, line_id=line_id, kind="capture", limit=1)
    assert sorted(captures) == sorted(sha for sha, kind in uploaded if kind == "capture")

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert _listed(gateway, viewer, line_id=line_id, since=later) == []
    earlier = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert len(_listed(gateway, viewer, line_id=line_id, since=earlier, until=later)) == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "thumbnail"}, "query:kind"),
        ({"line_id": "a\x00b"}, "query:line_id"),
        ({"limit": 0}, "query:limit"),
        ({"limit": 201}, "query:limit"),
        ({"since": "10000-01-01T00:00:00Z"}, "query:since"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "query:since"),
        ({"cursor": "not-a-cursor"}, "query:cursor"),
        # A cursor of another listing, and one whose key is no timestamp.
        ({"cursor": "eyJzIjoiYXVkaXQiLCJrIjoxLCJpIjoiIn0"}, "query:cursor"),
        ({"cursor": "eyJzIjoiaW1hZ2UtcmVjb3JkcyIsImsiOjEsImkiOiJ4In0"}, "query:cursor"),
    ],
)
def test_bad_filters_and_cursors_are_a_422(
    params: dict[str, Any], field: str, gateway: httpx.Client, admin_token: str
) -> None:
    answer = gateway.get("/api/image-records", params=params, headers=auth(admin_token))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert field in answer.text


def test_the_listing_needs_images_read(gateway: httpx.Client) -> None:
    assert gateway.get("/api/image-records").status_code == 401
