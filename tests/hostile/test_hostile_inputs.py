"""Input a hostile client would send, through the gateway, to every service: each case is
answered with a 4xx problem document, and every service is still ready afterwards.

The classes: NUL in text and filters; integers beyond int4/int8 in paths, queries and
cursors; datetimes at year 1 / 9999 with offsets and a naive bound beside an aware one;
JSON nested deeper than any parser should follow; floats beyond what round-trips; wrong
types; bodies over the route's limit; multipart fields that skip the query's pattern.
"""

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from loupe_stack.stack import Stack
from tests.conftest import auth

pytestmark = pytest.mark.e2e

U = "3f0c7a52-1b4e-4c8e-9a57-1f2e3d4c5b6a"
SHA = "ab" * 32
INT4 = 2**31
INT8 = 2**63
HUGE = 10**30
NUL = "\u0000"
DEEP = "[" * 10_000 + "]" * 10_000
DEEP_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000
EARLY = "0001-01-01T00:00:00+14:00"
LATE = "9999-12-31T23:59:59-14:00"


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def _result(**changes: Any) -> dict[str, Any]:
    result = {
        "result_id": str(uuid.uuid4()),
        "line_id": "hostile-line",
        "verdict": "pass",
        "captured_at": "2026-01-01T00:00:00Z",
    }
    result.update(changes)
    return {"results": [result]}


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"n": value}
    return value


@dataclass
class Case:
    id: str
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: bytes | str | None = None
    files: dict[str, Any] | None = None
    data: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


JSON = {"Content-Type": "application/json"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
CASES = [
    # --- catalog: programs ---
    Case("programs-nul-name", "POST", "/api/programs", json={"name": f"a{NUL}b"}),
    Case(
        "programs-nul-description",
        "POST",
        "/api/programs",
        json={"name": "hostile", "description": f"x{NUL}"},
    ),
    Case("programs-tools-int", "POST", "/api/programs", json={"name": "h", "config": {"tools": 5}}),
    Case("programs-name-int", "POST", "/api/programs", json={"name": 5}),
    Case("programs-deep-array", "POST", "/api/programs", content=DEEP, headers=JSON),
    Case("programs-deep-object", "POST", "/api/programs", content=DEEP_OBJECT, headers=JSON),
    Case("programs-oversized", "POST", "/api/programs", json={"name": "x" * 3_000_000}),
    Case("programs-q-nul", "GET", "/api/programs", params={"q": f"a{NUL}"}),
    Case("programs-tag-nul", "GET", "/api/programs", params={"tag": NUL}),
    Case("programs-limit-int4", "GET", "/api/programs", params={"limit": INT4}),
    Case("programs-limit-huge", "GET", "/api/programs", params={"limit": HUGE}),
    Case("programs-cursor-garbage", "GET", "/api/programs", params={"cursor": "%%%not-base64"}),
    Case(
        "programs-cursor-int8",
        "GET",
        "/api/programs",
        params={"cursor": _cursor({"k": INT8 * 4, "id": U})},
    ),
    Case(
        "programs-cursor-nul",
        "GET",
        "/api/programs",
        params={"cursor": _cursor({"k": NUL, "id": NUL})},
    ),
    Case("program-id-nul", "GET", "/api/programs/a%00b"),
    Case("revision-int4", "GET", f"/api/programs/{U}/revisions/{INT4}"),
    Case("revision-huge", "GET", f"/api/programs/{U}/revisions/{HUGE}"),
    Case("revision-negative-int8", "GET", f"/api/programs/{U}/revisions/-{INT8}"),
    Case("revisions-cursor-huge", "GET", f"/api/programs/{U}/revisions", params={"cursor": HUGE}),
    Case("diff-int8", "GET", f"/api/programs/{U}/diff", params={"from": 1, "to": INT8}),
    Case("diff-huge", "GET", f"/api/programs/{U}/diff", params={"from": HUGE, "to": 2}),
    Case(
        "program-put-deep",
        "PUT",
        f"/api/programs/{U}",
        content=DEEP,
        headers={**JSON, "If-Match": '"1"'},
    ),
    Case(
        "golden-revision-int4",
        "PUT",
        f"/api/programs/{U}/revisions/{INT4}/golden-set/{SHA}",
        json={"expected": "pass"},
    ),
    # --- catalog: results ---
    Case("results-revision-int4", "POST", "/api/results", json=_result(program_revision=INT4)),
    Case("results-captured-early", "POST", "/api/results", json=_result(captured_at=EARLY)),
    Case("results-captured-late", "POST", "/api/results", json=_result(captured_at=LATE)),
    Case("results-captured-naive", "POST", "/api/results", json=_result(captured_at="2026-01-01")),
    Case(
        "results-area-1e20",
        "POST",
        "/api/results",
        json=_result(
            verdict="fail",
            defects=[{"bbox": {"x": 0, "y": 0, "width": 1, "height": 1}, "area": 1e20}],
        ),
    ),
    Case(
        "results-bbox-int4",
        "POST",
        "/api/results",
        json=_result(
            verdict="fail",
            defects=[{"bbox": {"x": INT4, "y": 0, "width": 1, "height": 1}, "area": 1}],
        ),
    ),
    Case("results-nul-station", "POST", "/api/results", json=_result(station=f"s{NUL}")),
    Case("results-unknown-deep", "POST", "/api/results", json=_result(extra=_nested(300))),
    Case("results-score-string", "POST", "/api/results", json=_result(score="high")),
    Case("results-deep-body", "POST", "/api/results", content=DEEP, headers=JSON),
    Case(
        "results-huge-float-text", "POST", "/api/results", content='{"results":1e999}', headers=JSON
    ),
    Case("results-since-early", "GET", "/api/results", params={"since": EARLY}),
    Case("results-until-late", "GET", "/api/results", params={"until": LATE}),
    Case("results-line-nul", "GET", "/api/results", params={"line_id": NUL}),
    Case("results-limit-int8", "GET", "/api/results", params={"limit": INT8}),
    Case("results-cursor-garbage", "GET", "/api/results", params={"cursor": "x" * 300}),
    Case(
        "results-cursor-int8",
        "GET",
        "/api/results",
        params={"cursor": _cursor({"t": INT8 * 8, "id": INT8 * 8})},
    ),
    Case(
        "results-stats-mixed",
        "GET",
        "/api/results/stats",
        params={"since": "2026-01-01T00:00:00", "until": "2026-01-02T00:00:00Z"},
    ),
    Case("results-stats-late", "GET", "/api/results/stats", params={"until": LATE}),
    Case("result-id-huge", "GET", f"/api/results/{HUGE}"),
    # --- catalog: audit, retention, migrations ---
    Case("audit-actor-nul", "GET", "/api/audit", params={"actor": NUL}),
    Case("audit-target-nul", "GET", "/api/audit", params={"target": f"p{NUL}"}),
    Case(
        "audit-naive-aware",
        "GET",
        "/api/audit",
        params={"since": "2026-01-01T00:00:00", "until": "2026-01-02T00:00:00+00:00"},
    ),
    Case("audit-year-1", "GET", "/api/audit", params={"since": EARLY}),
    Case("audit-cursor-int8", "GET", "/api/audit", params={"cursor": _cursor([INT8 * 2])}),
    Case("audit-limit-int4", "GET", "/api/audit", params={"limit": INT4}),
    Case(
        "retention-target-nul",
        "PUT",
        "/api/retention/policies/line/a%00b",
        json={"keep_days": 30},
    ),
    Case(
        "retention-days-int8",
        "PUT",
        "/api/retention/policies/line/hostile-line",
        json={"keep_days": INT8},
    ),
    Case("retention-delete-nul", "DELETE", "/api/retention/policies/line/%00"),
    Case("retention-runs-limit", "GET", "/api/retention/runs", params={"limit": HUGE}),
    Case("retention-dry-run-type", "POST", "/api/retention/runs", params={"dry_run": "perhaps"}),
    Case("migration-deep", "POST", "/api/migrations/legacy", content=DEEP, headers=JSON),
    Case(
        "migration-deep-object",
        "POST",
        "/api/migrations/legacy",
        params={"dry_run": "true"},
        content=DEEP_OBJECT,
        headers=JSON,
    ),
    Case("migration-nul", "POST", "/api/migrations/legacy", json={f"k{NUL}": f"v{NUL}"}),
    Case("migration-run-id-huge", "GET", f"/api/migrations/{HUGE}"),
    Case("migrations-cursor-int8", "GET", "/api/migrations", params={"cursor": _cursor(INT8 * 2)}),
    # --- images ---
    Case("images-line-nul", "POST", "/api/images", params={"line_id": NUL}, content=PNG),
    Case(
        "images-filename-nul",
        "POST",
        "/api/images",
        params={"filename": f"a{NUL}.png"},
        content=PNG,
    ),
    Case(
        "images-multipart-line-id",
        "POST",
        "/api/images",
        files={"file": ("a.png", PNG, "image/png")},
        data={"line_id": "not a line id!"},
    ),
    Case(
        "images-multipart-line-nul",
        "POST",
        "/api/images",
        files={"file": ("a.png", PNG, "image/png")},
        data={"line_id": f"l{NUL}"},
    ),
    Case(
        "images-multipart-kind-int",
        "POST",
        "/api/images",
        files={"file": ("a.png", PNG, "image/png")},
        data={"kind": "9" * 40},
    ),
    Case("images-sha-nul", "GET", "/api/images/%00/metadata"),
    Case("images-sha-huge", "GET", f"/api/images/{HUGE}/status"),
    Case("images-thumbnail-size", "GET", f"/api/images/{SHA}/thumbnail", params={"size": INT8}),
    Case("images-exists-deep", "POST", "/api/images/exists", content=DEEP, headers=JSON),
    Case("images-exists-type", "POST", "/api/images/exists", json={"sha256": 5}),
    Case("images-exists-nul", "POST", "/api/images/exists", json={"sha256": [NUL]}),
    Case("images-gc-grace-1e12", "POST", "/api/images/gc", params={"grace_s": 1e12}),
    Case("images-gc-grace-inf", "POST", "/api/images/gc", params={"grace_s": "inf"}),
    Case("images-gc-grace-nan", "POST", "/api/images/gc", params={"grace_s": "nan"}),
    Case("integrity-limit-int8", "GET", "/api/integrity/report", params={"limit": INT8}),
    Case("integrity-cursor", "GET", "/api/integrity/report", params={"cursor": _cursor(HUGE)}),
    Case("images-delete-force-type", "DELETE", f"/api/images/{SHA}", params={"force": "x"}),
    # --- backup ---
    Case("backups-deep", "POST", "/api/backups", content=DEEP, headers=JSON),
    Case("backups-kind-nul", "POST", "/api/backups", json={"kind": f"full{NUL}"}),
    Case("backups-wrong-type", "POST", "/api/backups", json={"kind": 5}),
    Case("backups-id-nul", "GET", "/api/backups/%00"),
    Case("backups-id-traversal", "GET", "/api/backups/..%2f..%2fetc%2fpasswd"),
    Case("backups-id-huge", "DELETE", f"/api/backups/{HUGE}"),
    Case(
        "restore-unknown-mode",
        "POST",
        f"/api/backups/{U}/restore",
        json={"mode": f"x{NUL}"},
    ),
    Case("restore-deep", "POST", f"/api/backups/{U}/restore", content=DEEP, headers=JSON),
    Case("restores-id-huge", "GET", f"/api/backups/{U}/restores/{HUGE}"),
    Case("import-garbage", "POST", "/api/backups/import", content=b"not an archive" * 100),
    Case("import-deep", "POST", "/api/backups/import", content=DEEP, headers=JSON),
    Case(
        "schedule-never-fires",
        "POST",
        "/api/backup-schedules",
        json={"name": "hostile", "cron": "0 0 30 2 *"},
    ),
    Case(
        "schedule-nul",
        "POST",
        "/api/backup-schedules",
        json={"name": f"h{NUL}", "cron": "0 3 * * *"},
    ),
    Case(
        "schedule-keep-int8",
        "POST",
        "/api/backup-schedules",
        json={"name": "h", "cron": "0 3 * * *", "retention": {"keep_last": INT8}},
    ),
    Case("schedule-deep", "POST", "/api/backup-schedules", content=DEEP_OBJECT, headers=JSON),
    Case(
        "schedule-oversized",
        "POST",
        "/api/backup-schedules",
        json={"name": "x" * 3_000_000, "cron": "0 3 * * *"},
    ),
    Case("schedule-id-nul", "PUT", "/api/backup-schedules/%00", json={"name": "h"}),
    Case("exports-results-int8", "GET", "/api/exports", params={"results": INT8}),
    Case("exports-logs-huge", "GET", "/api/exports", params={"logs": HUGE}),
    # --- inspect ---
    Case(
        "inspect-revision-int4",
        "POST",
        "/api/inspections",
        json={"program_id": U, "capture_sha256": SHA, "program_revision": INT4},
    ),
    Case(
        "inspect-station-nul",
        "POST",
        "/api/inspections",
        json={"program_id": U, "capture_sha256": SHA, "station": f"s{NUL}"},
    ),
    Case(
        "inspect-part-nul",
        "POST",
        "/api/inspections/try",
        json={"program_id": U, "capture_sha256": SHA, "part_id": NUL},
    ),
    Case("inspect-deep", "POST", "/api/inspections", content=DEEP, headers=JSON),
    Case("inspect-try-deep", "POST", "/api/inspections/try", content=DEEP_OBJECT, headers=JSON),
    Case("inspect-wrong-type", "POST", "/api/inspections", json={"program_id": 5}),
    Case(
        "inspect-oversized",
        "POST",
        "/api/inspections",
        json={"program_id": U, "capture_sha256": SHA, "part_id": "x" * 3_000_000},
    ),
    Case(
        "inspect-huge-float",
        "POST",
        "/api/inspections",
        content='{"program_id":"'
        + U
        + '","capture_sha256":"'
        + SHA
        + '","program_revision":1e999}',
        headers=JSON,
    ),
]


def test_the_suite_covers_every_service(capsys: pytest.CaptureFixture[str]) -> None:
    prefixes = {"/api/programs", "/api/results", "/api/images", "/api/backups", "/api/inspections"}
    assert all(any(c.path.startswith(p) for c in CASES) for p in prefixes)
    assert len({c.id for c in CASES}) == len(CASES)
    with capsys.disabled():
        print(f"\nhostile input suite: {len(CASES)} cases")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_a_4xx_problem(
    gateway: httpx.Client, admin_token: str, case: Case
) -> None:
    answer = gateway.request(
        case.method,
        case.path,
        params=case.params or None,
        json=case.json,
        content=case.content,
        files=case.files,
        data=case.data,
        headers={**auth(admin_token), **case.headers},
        timeout=60,
    )
    assert 400 <= answer.status_code < 500, f"{answer.status_code}: {answer.text[:500]}"
    assert answer.headers["content-type"] == "application/problem+json", answer.text[:300]
    problem = answer.json()
    assert problem["status"] == answer.status_code
    assert problem["detail"]
    assert problem["request_id"] == answer.headers["x-request-id"]


def test_every_service_is_still_ready(platform: Stack) -> None:
    """Runs after the cases above (file order): none of them took a service down."""
    for service in ("catalog", "images", "backup", "inspect"):
        ready = httpx.get(f"{platform.service_url(service)}/readyz", timeout=10)
        assert ready.status_code == 200, f"{service}: {ready.text}"
