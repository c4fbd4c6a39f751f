"""The defect Pareto (`GET /api/results/defects`): the window's defects counted by kind,
tool, line or program, largest group first with shares; bounded windows; read permission."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from loupe_shared.kit.auth import Role
from tests.conftest import TokenMaker, auth
from tests.results.helpers import listed, result
from tests.support import eventually


def _defect(kind: str, tool: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "kind": kind,
        "bbox": {"x": 1, "y": 2, "width": 3, "height": 4},
        "area": 12,
    }
    if tool is not None:
        found["tool_id"] = tool
    return found


def _pareto(gateway: httpx.Client, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    answer = gateway.get("/api/results/defects", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_defects_are_counted_largest_group_first_with_cumulative_shares(
    gateway: httpx.Client, line: dict[str, str], viewer: dict[str, str]
) -> None:
    line_id = f"line-{uuid.uuid4().hex[:8]}"
    program = str(uuid.uuid4())
    scratches = [_defect("scratch", "edge") for _ in range(3)]
    batch = [
        result(line_id, "fail", program_id=program, defects=scratches),
        result(line_id, "fail", program_id=program, defects=[_defect("scratch", "edge")] * 2),
        result(line_id, "fail", program_id=program, defects=[_defect("dent", "surface")] * 2),
        result(line_id, "fail", defects=[_defect("stain")]),
        result(line_id, "pass"),
        result(line_id, "error", reason="undecodable", defects=[]),
    ]
    sent = gateway.post("/api/results", json={"results": batch}, headers=line)
    assert sent.status_code == 202, sent.text
    eventually("ingested", lambda: len(listed(gateway, viewer, line_id=line_id)) == 6)

    by_kind = _pareto(gateway, viewer, line_id=line_id)
    assert by_kind["by"] == "kind"
    assert (by_kind["results"], by_kind["failing_results"], by_kind["defects"]) == (6, 4, 8)
    assert [(g["key"], g["defects"], g["results"]) for g in by_kind["items"]] == [
        ("scratch", 5, 2),
        ("dent", 2, 1),
        ("stain", 1, 1),
    ]
    assert [g["share"] for g in by_kind["items"]] == [0.625, 0.25, 0.125]
    assert [g["cumulative_share"] for g in by_kind["items"]] == [0.625, 0.875, 1.0]

    by_tool = _pareto(gateway, viewer, line_id=line_id, by="tool")
    assert [(g["key"], g["defects"]) for g in by_tool["items"]] == [
        ("edge", 5),
        ("surface", 2),
        (None, 1),
    ]
    by_program = _pareto(gateway, viewer, line_id=line_id, by="program")
    assert [(g["key"], g["defects"]) for g in by_program["items"]] == [(program, 7), (None, 1)]
    one_program = _pareto(gateway, viewer, program_id=program, by="line")
    assert [(g["key"], g["defects"]) for g in one_program["items"]] == [(line_id, 7)]

    cut = _pareto(gateway, viewer, line_id=line_id, limit=1)
    assert (cut["groups"], len(cut["items"]), cut["defects"]) == (3, 1, 8)
    assert cut["items"][0]["cumulative_share"] == 0.625

    past = datetime.now(UTC) - timedelta(days=20)
    empty = _pareto(
        gateway,
        viewer,
        line_id=line_id,
        since=past.isoformat(),
        until=(past + timedelta(hours=1)).isoformat(),
    )
    assert (empty["results"], empty["defects"], empty["groups"], empty["items"]) == (0, 0, 0, [])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"by": "colour"}, "query:by"),
        ({"limit": 0}, "query:limit"),
        ({"limit": 501}, "query:limit"),
        ({"line_id": "bad line"}, "query:line_id"),
        ({"program_id": "not-a-uuid"}, "query:program_id"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "query:since"),
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "query:since"),
        ({"since": "10000-01-01T00:00:00Z"}, "query:since"),
        ({"until": "0001-01-01T00:00:00Z"}, "query:until"),
        ({"since": "2026-01-01T00:00:00\x00"}, "query:since"),
    ],
)
def test_bad_windows_and_filters_are_a_422(
    params: dict[str, Any], field: str, gateway: httpx.Client, viewer: dict[str, str]
) -> None:
    answer = gateway.get("/api/results/defects", params=params, headers=viewer)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert field in answer.text


def test_only_readers_of_results_see_defects(gateway: httpx.Client, make_token: TokenMaker) -> None:
    assert gateway.get("/api/results/defects").status_code == 401
    line = auth(make_token(Role.LINE, "defects-line"))
    assert gateway.get("/api/results/defects", headers=line).status_code == 403
