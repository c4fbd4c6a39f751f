"""Bounds from the storage types on every catalog route: a value PostgreSQL cannot hold (NUL,
a lone surrogate, an integer beyond its column, a timestamp outside the window, JSON too deep
or with numbers `jsonb` does not give back) is a 422 problem naming the field, and nothing is
written. And the other side: what is accepted at the bounds is stored and read back."""

import base64
import json
import uuid
from typing import Any

import httpx
import pytest

from loupe_shared.contracts.bounds import INT32_MAX, INT64_MAX
from tests.catalog.helpers import config_v3, new_program
from tests.conftest import auth

JSON = {"Content-Type": "application/json"}


def _cursor(sort: str, key: Any, id_: str = "") -> str:
    raw = json.dumps({"s": sort, "k": key, "i": id_}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture(scope="module")
def admin(admin_token: str) -> dict[str, str]:
    return auth(admin_token)


@pytest.fixture(scope="module")
def program(gateway: httpx.Client, admin: dict[str, str]) -> dict[str, Any]:
    created = gateway.post("/api/programs", json=new_program(), headers=admin)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    body["etag"] = created.headers["etag"]
    return body


def _newest_audit_id(gateway: httpx.Client, admin: dict[str, str]) -> int:
    items = gateway.get("/api/audit", params={"limit": 1}, headers=admin).json()["items"]
    return int(items[0]["id"]) if items else 0


def _assert_problem(answer: httpx.Response, field: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    named = [e["field"] for e in problem.get("errors", [])]
    assert any(f.startswith(field) for f in named) or problem["detail"].startswith(field), problem


def _program_body(**overrides: Any) -> str:
    return json.dumps(new_program(**overrides))


# A raw body lets a lone surrogate through: the standard library's parser turns `\ud800` into
# one, and PostgreSQL refuses it.
SURROGATE_DESCRIPTION = (
    '{"name": "S ' + uuid.uuid4().hex[:6] + '", "description": "\\ud800", '
    '"config": {"schema_version": 3}}'
)
SURROGATE_TOOL_NAME = (
    '{"name": "T ' + uuid.uuid4().hex[:6] + '", "config": {"schema_version": 3, "tools": '
    '[{"id": "a", "type": "presence", "name": "\\udfff", "roi": {"x": 0, "y": 0, "width": 1, '
    '"height": 1}, "threshold": 1, "min_defect_area": 1}]}}'
)
PROGRAM_BODIES = [
    ("description-nul", _program_body(description="a\x00b"), "body:description"),
    ("description-surrogate", SURROGATE_DESCRIPTION, "body:description"),
    ("message-nul", _program_body(message="\x00"), "body:message"),
    ("legacy-id-nul", _program_body(legacy_id="id\x00"), "body:legacy_id"),
    ("tools-a-number-v1", _program_body(config={"tools": 5}), "body:config.tools"),
    (
        "tools-a-number-v2",
        _program_body(config={"schema_version": 2, "tools": 5}),
        "body:config.tools",
    ),
    (
        "tool-a-number-v2",
        _program_body(config={"schema_version": 2, "tools": [5]}),
        "body:config.tools.0",
    ),
    (
        "tool-name-nul",
        _program_body(config={**config_v3(), "tools": [{**config_v3()["tools"][0], "name": "\0"}]}),
        "body:config",
    ),
    ("tool-name-surrogate", SURROGATE_TOOL_NAME, "body:config"),
    ("config-key-nul", _program_body(config={"schema_version": 3, "\x00": 1}), "body:config"),
    (
        "config-int-beyond-64-bits",
        '{"name": "n", "config": {"schema_version": 3, "x": 1%s}}' % ("0" * 30),
        "body:config",
    ),
    ("config-float-1e20", _program_body(config={"tools": [{"threshold": 1e20}]}), "body:config"),
    (
        "config-40-deep",
        '{"name": "n", "config": {"schema_version": 3, "x": ' + _nested(40) + "}}",
        "body:config",
    ),
]


@pytest.mark.parametrize(
    ("body", "field"), [c[1:] for c in PROGRAM_BODIES], ids=[c[0] for c in PROGRAM_BODIES]
)
def test_hostile_program_saves_are_refused_and_change_nothing(
    gateway: httpx.Client,
    admin: dict[str, str],
    program: dict[str, Any],
    body: str,
    field: str,
) -> None:
    before = _newest_audit_id(gateway, admin)
    _assert_problem(gateway.post("/api/programs", content=body, headers={**admin, **JSON}), field)
    if "legacy_id" not in body:
        saved = gateway.put(
            f"/api/programs/{program['id']}",
            content=body.replace('"name": "', '"name": "x'),
            headers={**admin, **JSON, "If-Match": program["etag"]},
        )
        _assert_problem(saved, field)
    assert _newest_audit_id(gateway, admin) == before
    current = gateway.get(f"/api/programs/{program['id']}", headers=admin)
    assert current.json()["revision"] == 1
    assert current.json()["version"] == program["version"]


def _reads(program_id: str) -> list[tuple[str, str, dict[str, Any], str]]:
    """(case, path, query, field) of reads with hostile values."""
    base = f"/api/programs/{program_id}"
    return [
        ("q-nul", "/api/programs", {"q": "a\x00"}, "query:q"),
        ("tag-nul", "/api/programs", {"tag": "\x00"}, "query:tag"),
        ("cursor-garbage", "/api/programs", {"cursor": "garbage!"}, "query:cursor"),
        (
            "cursor-key-nul",
            "/api/programs",
            {"cursor": _cursor("name", "\x00", "x")},
            "query:cursor",
        ),
        (
            "cursor-key-beyond-64-bits",
            "/api/programs",
            {"cursor": _cursor("name", 2**70, str(uuid.uuid4()))},
            "query:cursor",
        ),
        (
            "cursor-time-year-1",
            "/api/programs",
            {"sort": "created_at", "cursor": _cursor("created_at", "0001-01-01T00:00:00+14:00")},
            "query:cursor",
        ),
        (
            "cursor-time-naive",
            "/api/programs",
            {
                "sort": "created_at",
                "cursor": _cursor("created_at", "2020-01-01T00:00:00", str(uuid.uuid4())),
            },
            "query:cursor",
        ),
        ("revision-beyond-int32", f"{base}/revisions/{INT32_MAX + 1}", {}, "path:revision"),
        ("revision-beyond-int64", f"{base}/revisions/{2**70}", {}, "path:revision"),
        ("revision-zero", f"{base}/revisions/0", {}, "path:revision"),
        ("diff-to-beyond-int32", f"{base}/diff", {"from": 1, "to": INT32_MAX + 1}, "query:to"),
        ("diff-from-beyond-int64", f"{base}/diff", {"from": 2**64, "to": 1}, "query:from"),
        (
            "revisions-cursor-beyond-int32",
            f"{base}/revisions",
            {"cursor": _cursor("revision", INT32_MAX + 1)},
            "query:cursor",
        ),
        (
            "revisions-cursor-beyond-int64",
            f"{base}/revisions",
            {"cursor": _cursor("revision", 2**70)},
            "query:cursor",
        ),
        (
            "revisions-cursor-negative",
            f"{base}/revisions",
            {"cursor": _cursor("revision", -5)},
            "query:cursor",
        ),
        ("audit-actor-nul", "/api/audit", {"actor": "\x00"}, "query:actor"),
        ("audit-target-nul", "/api/audit", {"target": "program:\x00"}, "query:target"),
        ("audit-action-nul", "/api/audit", {"action": "\x00"}, "query:action"),
        (
            "audit-naive-since-aware-until",
            "/api/audit",
            {"since": "2020-01-01T00:00:00", "until": "2021-01-01T00:00:00Z"},
            "query:since",
        ),
        ("audit-year-1", "/api/audit", {"since": "0001-01-01T00:00:00+14:00"}, "query:since"),
        ("audit-year-9999", "/api/audit", {"until": "9999-12-31T23:59:59-14:00"}, "query:until"),
        (
            "audit-cursor-beyond-int64",
            "/api/audit",
            {"cursor": _cursor("audit", 2**70)},
            "query:cursor",
        ),
        (
            "audit-cursor-int64-max-plus-one",
            "/api/audit",
            {"cursor": _cursor("audit", INT64_MAX + 1)},
            "query:cursor",
        ),
        (
            "migrations-cursor-year-1",
            "/api/migrations",
            {"cursor": _cursor("migration-runs", "0001-01-01T00:00:00+14:00", str(uuid.uuid4()))},
            "query:cursor",
        ),
        (
            "migrations-cursor-key-int",
            "/api/migrations",
            {"cursor": _cursor("migration-runs", 2**70, "x")},
            "query:cursor",
        ),
    ]


READ_CASES = [c[0] for c in _reads("x")]


@pytest.mark.parametrize("case", READ_CASES)
def test_hostile_reads_are_a_422_naming_the_field(
    gateway: httpx.Client, admin: dict[str, str], program: dict[str, Any], case: str
) -> None:
    _, path, params, field = next(c for c in _reads(program["id"]) if c[0] == case)
    _assert_problem(gateway.get(path, params=params, headers=admin), field)


def test_bounds_of_reads_are_in_the_openapi(gateway: httpx.Client) -> None:
    spec = gateway.get("/openapi/catalog.json")
    assert spec.status_code == 200, spec.text
    paths = spec.json()["paths"]

    def parameter(path: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = next(
            p["schema"] for p in paths[path]["get"]["parameters"] if p["name"] == name
        )
        return found

    revision = parameter("/api/programs/{program_id}/revisions/{revision}", "revision")
    assert revision["maximum"] == INT32_MAX
    assert parameter("/api/programs/{program_id}/diff", "to")["maximum"] == INT32_MAX
    since = parameter("/api/audit", "since")
    assert "1900-01-01" in json.dumps(since)


@pytest.mark.parametrize(
    ("method", "target"),
    [("DELETE", "line/a%00b"), ("PUT", "line/a%00b"), ("DELETE", "program/%00")],
)
def test_retention_targets_with_nul_are_refused(
    gateway: httpx.Client, admin: dict[str, str], method: str, target: str
) -> None:
    answer = gateway.request(
        method,
        f"/api/retention/policies/{target}",
        json={"results_max_age_days": 5},
        headers=admin,
    )
    _assert_problem(answer, "path:target")


LEGACY_BODIES = [
    ("10000-deep-array", _nested(10_000), 422),
    ("10000-deep-in-an-object", '{"vision_programs": ' + _nested(10_000) + "}", 422),
    ("deep-in-a-localstorage-string", json.dumps({"vision_programs": _nested(10_000)}), 422),
    ("100-deep-config", '[{"id": "a", "name": "n", "config": {"x": ' + _nested(100) + "}}]", 422),
    ("lone-surrogate", '[{"id": "\\ud800", "name": "n\\ud800", "config": {}}]', 400),
]


@pytest.mark.parametrize(
    ("body", "status"), [c[1:] for c in LEGACY_BODIES], ids=[c[0] for c in LEGACY_BODIES]
)
@pytest.mark.parametrize("dry_run", ["true", "false"])
def test_hostile_legacy_exports_are_refused_as_a_whole(
    gateway: httpx.Client, admin: dict[str, str], body: str, status: int, dry_run: str
) -> None:
    before = _newest_audit_id(gateway, admin)
    answer = gateway.post(
        "/api/migrations/legacy",
        params={"dry_run": dry_run},
        content=body,
        headers={**admin, **JSON},
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    if status == 422:
        assert "nested deeper than 64 levels" in answer.json()["detail"]
    assert _newest_audit_id(gateway, admin) == before


def test_legacy_programs_with_hostile_fields_are_invalid_items_and_nothing_is_written(
    gateway: httpx.Client, admin: dict[str, str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    export = [
        {"id": f"nul-id-{tag}\x00", "name": "n", "config": {}},
        {"id": f"nul-name-{tag}", "name": "n\x00", "config": {}},
        {"id": f"tools-{tag}", "name": f"tools {tag}", "config": {"tools": 5}},
        {"id": f"nul-tool-{tag}", "name": f"tool {tag}", "config": {"tools": [{"name": "\x00"}]}},
        {"id": f"huge-{tag}", "name": f"huge {tag}", "config": {"exposure": 1e300}},
    ]
    answer = gateway.post(
        "/api/migrations/legacy", params={"dry_run": "false"}, json=export, headers=admin
    )
    assert answer.status_code == 201, answer.text
    outcomes = [item["outcome"] for item in answer.json()["items"]]
    assert outcomes == ["invalid"] * len(export), answer.json()["items"]
    listed = gateway.get("/api/programs", params={"q": tag}, headers=admin).json()["items"]
    assert listed == []


def test_values_at_the_bounds_are_stored_and_read_back(
    gateway: httpx.Client, admin: dict[str, str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    config = config_v3(threshold=255.0, width=65535)
    body = new_program(
        name=f"Ünïcödé 🔍 {tag} " + "界" * 150,
        description="描述\u2028🙂" * 800,
        message="m" * 500,
        legacy_id="ʟ" * 200,
        config={**config, "acquisition": {"trigger_mode": "external", "exposure": 10_000_000}},
    )
    created = gateway.post("/api/programs", json=body, headers=admin)
    assert created.status_code == 201, created.text
    program = created.json()
    assert program["description"] == body["description"]
    assert program["legacy_id"] == body["legacy_id"]
    reads = [
        f"/api/programs/{program['id']}",
        f"/api/programs/{program['id']}/revisions",
        f"/api/programs/{program['id']}/revisions/1",
        f"/api/programs/{program['id']}/diff?from=1&to=1",
        f"/api/audit?target=program:{program['id']}&since=1900-01-01T00:00:00Z"
        "&until=2199-12-31T23:59:59.999999-00:00",
        "/api/exports?images=false&results=0&logs=10",
    ]
    for path in reads:
        answer = gateway.get(path, headers=admin)
        assert answer.status_code == 200, (path, answer.text)
    listed = gateway.get("/api/programs", params={"q": tag}, headers=admin).json()["items"]
    assert [p["id"] for p in listed] == [program["id"]]
    exported = gateway.get("/api/exports", params={"images": "false", "results": 0}, headers=admin)
    found = [p for p in exported.json()["data"]["programs"] if p["id"] == program["id"]]
    assert found[0]["description"] == body["description"]
    # A cursor the API made is always taken back, also at the far end of the windows.
    for sort in ("name", "-created_at"):
        page = gateway.get("/api/programs", params={"sort": sort, "limit": 1}, headers=admin)
        cursor = page.json()["next_cursor"]
        if cursor:
            following = gateway.get(
                "/api/programs", params={"sort": sort, "limit": 1, "cursor": cursor}, headers=admin
            )
            assert following.status_code == 200, following.text


def test_a_legacy_config_is_bounded_after_its_upgrade_not_before(
    gateway: httpx.Client, admin: dict[str, str]
) -> None:
    # What the upgrade drops (a large field the old frontend kept) is not held to the bounds
    # of a stored config; what it keeps is.
    tag = uuid.uuid4().hex[:8]
    export = [{"id": f"big-{tag}", "name": f"big {tag}", "config": {"preview": "p" * 400_000}}]
    answer = gateway.post(
        "/api/migrations/legacy", params={"dry_run": "true"}, json=export, headers=admin
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"][0]["outcome"] == "imported", answer.json()["items"]
