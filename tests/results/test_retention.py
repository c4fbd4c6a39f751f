"""Retention against a catalog and images service of the test's own: policies per line,
program or installation (the longest age wins), dry runs, chunked deletion, and captured
images released to the collector — never a master image or an image still in use."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from loupe_shared.contracts import subjects
from loupe_shared.kit.auth import Role
from tests.catalog.helpers import new_program, publish
from tests.databases import sql
from tests.images.conftest import IsolatedStore
from tests.images.helpers import make_image
from tests.support import eventually


def _result(line_id: str, days_ago: float, capture: str | None = None) -> dict[str, Any]:
    return {
        "result_id": str(uuid.uuid4()),
        "line_id": line_id,
        "verdict": "pass",
        "captured_at": (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(),
        "capture_sha256": capture,
    }


def test_retention_expires_results_and_releases_captures_never_masters(
    isolated_store: IsolatedStore,
) -> None:
    store = isolated_store
    store.start_catalog()
    store.start_images()
    line = store.token(Role.LINE)
    engineer = store.token(Role.ENGINEER)
    operator = store.token(Role.OPERATOR)
    database = store.catalog.env["CATALOG_DB_NAME"]

    def count(where: str = "true") -> int:
        return int(
            sql(store.platform, database, "SELECT count(*) FROM results WHERE " + where)[0][0]  # noqa: S608
        )

    with store.client() as images, store.client(store.catalog.url) as catalog:
        captures = []
        for seed in (51, 52):
            answer = images.post(
                "/api/images",
                params={"kind": "capture", "line_id": "line-a"},
                content=make_image(seed=seed),
                headers=line,
            )
            captures.append(answer.json()["sha256"])
        master = images.post("/api/images", content=make_image(seed=53), headers=engineer).json()
        program = catalog.post(
            "/api/programs",
            json=new_program(master_image_sha256=master["sha256"]),
            headers=engineer,
        )
        assert program.status_code == 201

        batch = (
            [_result("line-a", 100, captures[0]) for _ in range(5)]
            + [_result("line-a", 1, captures[1]) for _ in range(5)]
            + [_result("line-b", 100) for _ in range(5)]
            # A master image also used as a "capture" by an old result.
            + [_result("line-b", 100, master["sha256"])]
        )
        publish(
            store.nats,
            subjects.subject(subjects.RESULTS_RECORDED, store.namespace),
            orjson.dumps({"results": batch}),
        )
        eventually("ingested", lambda: count() == 16)

        # Captures in use by results are not collected.
        gc = images.post("/api/images/gc", params={"grace_s": 0}, headers=store.admin).json()
        assert gc["collected"] == 0
        assert gc["referenced"] == 3

        def put(scope: str, target: str, **body: int) -> int:
            answer = catalog.put(
                f"/api/retention/policies/{scope}/{target}", json=body, headers=operator
            )
            return answer.status_code

        assert put("line", "line-a", results_max_age_days=30) == 200
        dry = catalog.post("/api/retention/runs", headers=operator).json()
        assert dry["dry_run"] is True
        assert dry["would_expire_results"] == 5
        assert count() == 16  # a dry run changes nothing

        # Longest wins: the installation says 20 days, line-b's own policy 200.
        assert put("all", "*", results_max_age_days=20, captures_max_age_days=10) == 200
        assert put("line", "line-b", results_max_age_days=200) == 200
        dry = catalog.post("/api/retention/runs", headers=operator).json()
        assert dry["would_expire_results"] == 5  # only line-a's old ones
        assert dry["would_release_captures"] == 1  # line-b's old result naming the master

        applied = catalog.post(
            "/api/retention/runs", params={"dry_run": False}, headers=operator
        ).json()
        assert applied["expired_results"] == 5
        assert applied["released_captures"] == 1
        assert count("line_id = 'line-a'") == 5
        assert count("line_id = 'line-b'") == 6
        assert count("capture_sha256 IS NOT NULL") == 5  # line-a's recent ones

        gc = images.post("/api/images/gc", params={"grace_s": 0}, headers=store.admin).json()
        # The old capture is no longer used and goes; the recent one and the master stay.
        assert gc["collected_sha256"] == [captures[0]]
        assert images.get(f"/api/images/{master['sha256']}", headers=engineer).status_code == 200
        assert images.get(f"/api/images/{captures[1]}", headers=engineer).status_code == 200

        runs = catalog.get("/api/retention/runs", headers=operator).json()
        assert [r["dry_run"] for r in runs] == [False, True, True]
        policies = catalog.get("/api/retention/policies", headers=operator).json()
        assert {(p["scope"], p["target"]) for p in policies} == {
            ("all", "*"),
            ("line", "line-a"),
            ("line", "line-b"),
        }
        audited = sql(
            store.platform,
            database,
            "SELECT action FROM audit_log WHERE action LIKE 'retention.%' ORDER BY at",
        )
        assert [row["action"] for row in audited] == ["retention.policy_set"] * 3 + [
            "retention.run"
        ]

        # Bad input: a clear 4xx, nothing stored.
        assert put("all", "line-a", results_max_age_days=5) == 422
        assert put("program", "not-a-uuid", results_max_age_days=5) == 422
        assert put("line", "line-a") == 422
        assert put("line", "line-a", results_max_age_days=0) == 422
        assert put("shift", "x", results_max_age_days=5) == 422
        assert (
            catalog.delete("/api/retention/policies/line/nope", headers=operator).status_code == 404
        )
        assert (
            catalog.delete("/api/retention/policies/line/line-a", headers=operator).status_code
            == 204
        )
        assert catalog.get("/api/retention/policies", headers=engineer).status_code == 403
