"""`GET /api/results?defect_kind=`: only results with a defect of that kind, keyset pages
kept; a bad value is a 422 problem."""

import uuid

import httpx
import pytest

from tests.results.helpers import listed, result
from tests.support import eventually


def _defect(kind: str) -> dict[str, object]:
    return {"kind": kind, "bbox": {"x": 1, "y": 2, "width": 3, "height": 4}, "area": 12}


def test_results_are_filtered_by_defect_kind_across_pages(
    gateway: httpx.Client, line: dict[str, str], viewer: dict[str, str]
) -> None:
    line_id = f"line-{uuid.uuid4().hex[:8]}"
    dents = [
        result(line_id, "fail", defects=[_defect("scratch"), _defect("dent")]) for _ in range(3)
    ]
    batch = [
        *dents,
        result(line_id, "fail", defects=[_defect("scratch")]),
        result(line_id, "fail", defects=[_defect("dented")]),  # another kind, not a prefix match
        result(line_id, "pass"),
    ]
    sent = gateway.post("/api/results", json={"results": batch}, headers=line)
    assert sent.status_code == 202, sent.text
    eventually("ingested", lambda: len(listed(gateway, viewer, line_id=line_id)) == len(batch))

    found = listed(gateway, viewer, line_id=line_id, defect_kind="dent")
    assert sorted(r["result_id"] for r in found) == sorted(r["result_id"] for r in dents)
    assert len(listed(gateway, viewer, line_id=line_id, defect_kind="scratch")) == 4
    assert listed(gateway, viewer, line_id=line_id, defect_kind="crack") == []

    # Pages of one, following the cursor, give the same three, newest first, once each.
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"line_id": line_id, "defect_kind": "dent", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = gateway.get("/api/results", params=params, headers=viewer).json()
        seen += [r["result_id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(r["result_id"] for r in dents)
    assert len(set(seen)) == 3


@pytest.mark.parametrize("bad", ["", "x" * 101, "a\x00b"])
def test_a_bad_defect_kind_is_a_422_problem(
    gateway: httpx.Client, viewer: dict[str, str], bad: str
) -> None:
    answer = gateway.get("/api/results", params={"defect_kind": bad}, headers=viewer)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert any(e["field"] == "query:defect_kind" for e in answer.json()["errors"])
