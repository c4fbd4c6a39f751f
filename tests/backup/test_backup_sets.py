"""Backup sets: a full backup holds every row and every object with its checksum; an
incremental one copies only what the backup bucket lacks; progress is visible and announced."""

from typing import Any

from loupe_shared.kit.auth import Role
from tests.backup.conftest import Installation, backup, events, png, settle_images, upload


def _get(inst: Installation, path: str, token: dict[str, str] | None = None) -> Any:
    with inst.client("backup") as client:
        answer = client.get(path, headers=token or inst.admin)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_full_then_incremental_copies_only_new_blobs(source: Installation) -> None:
    operator = source.token(Role.OPERATOR)
    settle_images(source)
    full = backup(source, {"kind": "full"}, token=operator)
    assert full["status"] == "completed", full
    assert full["compatibility"] == "same"
    counts = full["counts"]
    for table in ("programs", "program_revisions", "results", "image_records", "alembic_version"):
        found = source.sql(f'SELECT count(*) FROM "{table}"')[0][0]  # noqa: S608
        assert counts[f"rows.{table}"] == found > 0, table
    images = source.objects()
    assert counts["objects"] == len(images)
    assert sum(1 for k in images if k.startswith("blobs/")) == counts["rows.image_records"]
    progress = full["progress"]
    assert progress["percent"] == 100.0
    assert progress["objects_done"] == progress["objects_total"]
    assert progress["bytes_done"] == progress["bytes_total"] > 0

    # Progress and completion were announced.
    announced = [e for e in events(source, "backup.progress") if e["backup_id"] == full["id"]]
    assert len(announced) >= 2
    assert [e["percent"] for e in announced] == sorted(e["percent"] for e in announced)
    completed = [e for e in events(source, "backup.completed") if e["backup_id"] == full["id"]]
    assert len(completed) == 1

    # Nothing changed: nothing is read or copied again.
    same = backup(source, {"kind": "incremental"})
    assert same["status"] == "completed"
    assert same["parent_id"] == full["id"]
    data_files = sum(1 for k in same["counts"] if k.startswith("rows."))
    assert same["progress"]["objects_copied"] == data_files  # no object of the images bucket
    assert same["counts"]["objects"] == full["counts"]["objects"]

    # One new image: its blob (and thumbnails, status) and the data files are copied.
    upload(source, png(9999), source.token(Role.ENGINEER))
    changed = backup(source, {"kind": "incremental"})
    assert changed["status"] == "completed"
    new_objects = changed["counts"]["objects"] - full["counts"]["objects"]
    assert new_objects >= 1
    assert changed["progress"]["objects_copied"] <= data_files + new_objects

    listed = _get(source, "/api/backups", operator)
    ids = [item["id"] for item in listed["items"]]
    assert ids[:3] == [changed["id"], same["id"], full["id"]]
    assert all(i["compatibility"] == "same" for i in listed["items"][:3])


def test_partial_backup_with_results_range(source: Installation) -> None:
    done = backup(
        source,
        {
            "include": {
                "images": False,
                "audit": False,
                "results_since": "2026-11-05T00:00:00Z",
                "results_until": "2026-11-10T00:00:00Z",
            }
        },
    )
    assert done["status"] == "completed", done
    assert done["counts"]["objects"] == 0
    assert "rows.audit_log" not in done["counts"]
    assert "rows.image_records" not in done["counts"]
    in_range = source.sql(
        "SELECT count(*) FROM results WHERE captured_at >= '2026-11-05' "
        "AND captured_at < '2026-11-10'"
    )[0][0]
    assert done["counts"]["rows.results"] == in_range > 0


def test_bad_requests_change_nothing(source: Installation) -> None:
    before = _get(source, "/api/backups")["items"]
    with source.client("backup") as client:
        for body in (
            {"kind": "weekly"},
            {
                "include": {
                    "results_since": "2026-11-10T00:00:00Z",
                    "results_until": "2026-11-01T00:00:00Z",
                }
            },
            {"include": {"results_since": "2026-11-10T00:00:00"}},
            {"include": {"results_since": "0001-01-01T00:00:00+14:00"}},
            {"include": {"results_until": "9999-12-31T23:59:59-14:00"}},
            {"include": {"tokens": "sometimes"}},
            {"unknown": 1},
        ):
            answer = client.post("/api/backups", json=body, headers=source.admin)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
        assert (
            client.post(
                "/api/backups",
                content=b"{",
                headers={**source.admin, "Content-Type": "application/json"},
            ).status_code
            == 422
        )
        large = client.post(
            "/api/backups",
            content=b'{"kind": "full", "pad": "' + b"x" * 70_000 + b'"}',
            headers={**source.admin, "Content-Type": "application/json"},
        )
        assert large.status_code == 413, large.text
        assert large.headers["content-type"] == "application/problem+json"
        assert large.json()["request_id"] == large.headers["x-request-id"]
        never = client.post(
            "/api/backup-schedules",
            json={"name": "never", "cron": "0 0 30 2 *"},
            headers=source.admin,
        )
        assert never.status_code == 422, never.text
        assert "body:cron" in never.json()["detail"]
        assert "never" in never.json()["detail"]
        nul = client.post(
            "/api/backup-schedules",
            json={"name": "a\u0000b", "cron": "0 3 * * *"},
            headers=source.admin,
        )
        assert nul.status_code == 422, nul.text
        missing = client.get("/api/backups/nope", headers=source.admin)
        assert missing.status_code == 404
        assert client.get("/api/backups/..%2Fx", headers=source.admin).status_code in (404, 422)
    assert _get(source, "/api/backups")["items"] == before


def test_roles(source: Installation) -> None:
    viewer = source.token(Role.VIEWER)
    engineer = source.token(Role.ENGINEER)
    operator = source.token(Role.OPERATOR)
    with source.client("backup") as client:
        assert client.get("/api/backups").status_code == 401
        assert client.get("/api/backups", headers=viewer).status_code == 403
        assert client.post("/api/backups", json={}, headers=engineer).status_code == 403
        some = client.get("/api/backups", headers=operator).json()["items"]
        completed = next(i for i in some if i["status"] == "completed")
        # Operators verify and dry-run; deleting and restoring is for admins.
        target = f"/api/backups/{completed['id']}"
        assert client.delete(target, headers=operator).status_code == 403
        dry = client.post(f"{target}/restore", json={"dry_run": True}, headers=operator)
        assert dry.status_code == 200, dry.text
        real = client.post(f"{target}/restore", json={"dry_run": False}, headers=operator)
        assert real.status_code == 403
        assert client.get(target, headers=operator).status_code == 200
