"""`GET /api/audit?request_id=`: the rows one request wrote; a malformed id is a 422 problem."""

import uuid

import httpx
import pytest

from loupe_shared.kit.auth import Role
from tests.catalog.helpers import new_program
from tests.conftest import TokenMaker, auth


@pytest.fixture
def engineer(make_token: TokenMaker) -> dict[str, str]:
    return auth(make_token(Role.ENGINEER, "audit-engineer"))


def test_audit_rows_are_filtered_by_request_id(
    gateway: httpx.Client, engineer: dict[str, str], admin_token: str
) -> None:
    request_ids = [f"test-{uuid.uuid4().hex}" for _ in range(2)]
    created = [
        gateway.post("/api/programs", json=new_program(), headers={**engineer, "X-Request-ID": rid})
        for rid in request_ids
    ]
    assert [c.status_code for c in created] == [201, 201], [c.text for c in created]

    for rid, answer in zip(request_ids, created, strict=True):
        page = gateway.get(
            "/api/audit", params={"request_id": rid}, headers=auth(admin_token)
        ).json()
        assert [(e["action"], e["target"], e["request_id"]) for e in page["items"]] == [
            ("programs.create", f"program:{answer.json()['id']}", rid)
        ]
        assert page["next_cursor"] is None
    unknown = gateway.get(
        "/api/audit", params={"request_id": f"test-{uuid.uuid4().hex}"}, headers=auth(admin_token)
    )
    assert unknown.json()["items"] == []


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "semi;colon", "a\x00b"])
def test_a_malformed_request_id_is_a_422_problem(
    gateway: httpx.Client, admin_token: str, bad: str
) -> None:
    answer = gateway.get("/api/audit", params={"request_id": bad}, headers=auth(admin_token))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert any(e["field"] == "query:request_id" for e in answer.json()["errors"])
