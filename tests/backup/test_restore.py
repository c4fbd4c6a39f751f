"""Restore: a full round trip into a new database and new buckets is identical row for row and
byte for byte; a restore killed midway, or one that fails, leaves the installation as it was;
writes are refused (503) while a restore runs."""

import hashlib
import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from loupe_shared.kit.auth import Role
from loupe_stack.stack import Stack
from tests.backup.conftest import (
    Installation,
    MakeInstallation,
    backup,
    finished_restore,
    png,
    populate,
    restore_state,
    settle,
    settle_images,
    start_restore,
    stored_objects,
    upload,
)
from tests.databases import Databases
from tests.support import eventually


def _audited_restore(rows: dict[str, list[str]]) -> dict[str, list[str]]:
    """The rows without the audit record of the restore itself (which is kept whatever the
    restore's outcome: the audit log is appended to by the catalog)."""
    return {
        table: [r for r in found if not (table == "audit_log" and ",backup.restore" in r)]
        for table, found in rows.items()
    }


def test_round_trip_into_a_new_database_and_new_buckets(
    source: Installation, make_installation: MakeInstallation
) -> None:
    # No writer while the snapshot is compared (the catalog would append the audit record of
    # the backup itself).
    settle_images(source)
    line = source.token(Role.LINE)  # issued by the source: comes back with the restore
    source.stop("catalog")
    try:
        done = backup(source)
        rows, images = source.rows(), stored_objects(source)
    finally:
        source.start("catalog")
    assert done["status"] == "completed"
    assert len(rows["programs"]) >= 3
    assert len(rows["results"]) >= 30
    assert sum(1 for k in images if k.startswith("blobs/")) >= 6

    target = make_installation(backup_bucket=source.backup_bucket)
    target.start("backup")
    with target.client("backup") as client:
        plan = client.post(
            f"/api/backups/{done['id']}/restore",
            json={"mode": "empty"},
            headers=target.admin,
        ).json()
    assert plan["can_restore"] is True, plan
    assert plan["compatibility"] == "same"
    assert plan["objects_to_copy"] == len(images)
    assert plan["tokens"]["restored"] is True
    assert plan["tokens"]["in_backup"] >= 2
    assert plan["tables"]["programs"] == {"current_rows": 0, "backup_rows": len(rows["programs"])}
    assert target.rows()["programs"] == []  # the dry run changed nothing

    started = start_restore(target, done["id"], mode="empty")
    assert started.status_code == 202, started.text
    state = finished_restore(target, done["id"], started.json()["id"])
    assert state["status"] == "completed", state
    assert state["restore_point_id"] is None  # nothing to keep in an empty installation

    assert target.rows() == rows
    assert stored_objects(target) == images

    # The restored installation works: its services start on it and serve the data.
    target.start("images")
    target.start("catalog")
    # The restore is in the restored audit log (published after the commit).
    eventually(
        "the restore audited",
        lambda: bool(
            target.sql("SELECT count(*) FROM audit_log WHERE action = 'backup.restore.finished'")[
                0
            ][0]
        ),
    )
    viewer = target.token(Role.VIEWER)
    assert state["details"]["tokens_restored"] >= 2
    with target.client("catalog") as catalog:
        # The source's token works on the restored installation (its hash came back).
        assert catalog.get("/api/programs", headers=line).status_code == 200
    with target.client("catalog") as catalog, target.client("images") as served:
        programs = catalog.get("/api/programs", headers=viewer).json()["items"]
        assert len(programs) == len(rows["programs"])
        sha = programs[0]["master_image_sha256"]
        answer = served.get(f"/api/images/{sha}", headers=viewer)
        assert answer.status_code == 200
        assert answer.headers["etag"].strip('"') == sha


@pytest.fixture(scope="module")
def tenant(
    platform: Stack,
    admin_token: str,
    databases: Databases,
    source: Installation,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Installation]:
    """An installation with data of its own that restores from the source's backup bucket."""
    target = Installation(
        platform,
        admin_token,
        tmp_path_factory.mktemp("tenant"),
        databases,
        backup_bucket=source.backup_bucket,
    )
    try:
        target.start("images")
        target.start("catalog")
        target.start("backup")
        populate(target, seed=7, programs=1)
        yield target
    finally:
        target.close()


def test_restore_killed_midway_leaves_the_installation_as_it_was(
    source: Installation, tenant: Installation
) -> None:
    done = backup(source)
    target = tenant
    target.stop("backup")
    target.start("backup", restore_hold_before_commit_s="60")
    rows, images = target.rows(), stored_objects(target)
    engineer = target.token(Role.ENGINEER)

    started = start_restore(target, done["id"])
    assert started.status_code == 202, started.text
    restore_id = started.json()["id"]
    eventually(
        "restore holding its transaction",
        lambda: restore_state(target, done["id"], restore_id)["phase"] == "holding",
        timeout_s=60,
    )
    # Maintenance: writes are refused with a clear message; reads that need no locked table
    # (and the image bytes) are served.
    with target.client("catalog") as catalog, target.client("images") as served:
        refused = catalog.post("/api/programs", json={"name": "x"}, headers=engineer)
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert "restore" in refused.json()["detail"]
        assert refused.json()["maintenance"]["restore_id"] == restore_id
        assert "retry-after" in refused.headers
        assert (
            served.post("/api/images?kind=master", content=png(77), headers=engineer).status_code
            == 503
        )
        sha = next(k for k in images if k.startswith("blobs/")).rsplit("/", 1)[-1]
        assert served.get(f"/api/images/{sha}", headers=engineer).status_code == 200
    restore_point = restore_state(target, done["id"], restore_id)["restore_point_id"]
    assert restore_point

    target.kill("backup")

    after_rows = target.rows()
    assert _audited_restore(after_rows) == _audited_restore(rows)
    assert any(",backup.restore," in r for r in after_rows["audit_log"])
    after = stored_objects(target)
    assert {k: after[k] for k in images} == images  # every object as it was
    # Added blobs are unreferenced (collected by the images service's GC), never referenced.
    # Maintenance ends when its lease runs out, without the dead restore.
    with target.client("catalog") as catalog:
        eventually(
            "writes accepted again",
            lambda: (
                catalog.post("/api/programs", json={"name": "after"}, headers=engineer).status_code
                != 503
            ),
            timeout_s=20,
        )
    target.start("backup")
    # Marked once the killed process's lease on the restore expired (BACKUP_LEASE_TTL_S).
    eventually(
        "the killed restore marked interrupted",
        lambda: restore_state(target, done["id"], restore_id)["status"] == "failed",
        timeout_s=30,
    )
    state = restore_state(target, done["id"], restore_id)
    assert state["status"] == "failed"
    assert "interrupted" in state["error"]
    with target.client("backup") as client:
        point = client.get(f"/api/backups/{restore_point}", headers=target.admin).json()
    assert point["status"] == "completed"
    assert point["kind"] == "restore-point"


def test_failed_restore_rolls_back_and_replace_restore_succeeds(
    source: Installation, tenant: Installation
) -> None:
    broken_blob = upload(source, png(4242), source.token(Role.ENGINEER))
    done = backup(source)
    target = tenant
    target.stop("backup")
    target.start("backup")
    settle(target, results=30, uploads=2)
    rows, images = target.rows(), stored_objects(target)
    source.s3.remove_object(source.backup_bucket, f"blobs/{broken_blob[:2]}/{broken_blob}")

    started = start_restore(target, done["id"])
    assert started.status_code == 202, started.text
    state = finished_restore(target, done["id"], started.json()["id"])
    assert state["status"] == "failed"
    assert state["rolled_back"] is True
    assert broken_blob in state["error"]
    assert _audited_restore(target.rows()) == _audited_restore(rows)
    assert stored_objects(target) == images  # the blobs it had added were removed again
    engineer = target.token(Role.ENGINEER)
    with target.client("catalog") as catalog:
        # No maintenance left behind: the withdrawn notice reaches the catalog within its
        # guard's refresh interval (a write answers 422 for its body, not 503, from then on).
        eventually(
            "maintenance lifted",
            lambda: (
                catalog.post("/api/programs", json={"name": ""}, headers=engineer).status_code
                == 422
            ),
        )

    # The next backup copies the blob again from the images bucket; that set restores over
    # the installation's own data.
    settle_images(source)
    source.stop("catalog")
    try:
        whole = backup(source)
        expected = source.rows()
    finally:
        source.start("catalog")
    started = start_restore(target, whole["id"], mode="replace")
    state = finished_restore(target, whole["id"], started.json()["id"])
    assert state["status"] == "completed", state
    assert _audited_restore(target.rows()) == _audited_restore(expected)


def _copy_set(
    inst: Installation,
    backup_id: str,
    new_id: str,
    edit: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """A copy of a set whose manifest is rewritten by `edit` (as an older or newer release
    would have written it)."""
    s3, bucket = inst.s3, inst.backup_bucket
    prefix, new_prefix = f"sets/{backup_id}/", f"sets/{new_id}/"
    for item in s3.list_objects(bucket, prefix=prefix, recursive=True):
        assert item.object_name is not None
        name = item.object_name.removeprefix(prefix)
        response = s3.get_object(bucket, item.object_name)
        data = response.read()
        response.close()
        if name == "manifest.json":
            edited = edit(json.loads(data))
            data = json.dumps(edited).encode()
            manifest_sha = hashlib.sha256(data).hexdigest()
        if name == "state.json":
            continue
        s3.put_object(bucket, new_prefix + name, io.BytesIO(data), len(data))
    response = s3.get_object(bucket, f"{prefix}state.json")
    state = json.loads(response.read())
    response.close()
    state.update(id=new_id, manifest_sha256=manifest_sha)
    state["format_version"] = edited["format_version"]
    state["alembic_revisions"] = edited.get("alembic_revisions", state["alembic_revisions"])
    data = json.dumps(state).encode()
    s3.put_object(bucket, f"{new_prefix}state.json", io.BytesIO(data), len(data))


def _as_format_1(manifest: dict[str, Any]) -> dict[str, Any]:
    manifest = dict(manifest, format_version=1)
    manifest["blobs"] = manifest.pop("objects")
    manifest["alembic_revision"] = manifest.pop("alembic_revisions")[0]
    for table in manifest["tables"]:
        table.pop("columns")
        table.pop("partitions")
    return manifest


def test_older_format_restores_and_newer_ones_are_refused(
    source: Installation, make_installation: MakeInstallation
) -> None:
    settle_images(source)
    source.stop("catalog")
    try:
        done = backup(source)
        rows = source.rows()
    finally:
        source.start("catalog")
    _copy_set(source, done["id"], "older-format", _as_format_1)
    _copy_set(source, done["id"], "newer-format", lambda m: dict(m, format_version=99))
    _copy_set(
        source,
        done["id"],
        "newer-schema",
        lambda m: dict(m, alembic_revisions=["9999"]),
    )
    target = make_installation(backup_bucket=source.backup_bucket)
    target.start("backup")
    with target.client("backup") as client:
        listed = {
            i["id"]: i for i in client.get("/api/backups", headers=target.admin).json()["items"]
        }
        assert listed["newer-format"]["compatibility"] == "incompatible"
        assert listed["newer-schema"]["compatibility"] == "incompatible"
        assert listed["older-format"]["compatibility"] == "same"
        for refused in ("newer-format", "newer-schema"):
            answer = client.post(
                f"/api/backups/{refused}/restore",
                json={"mode": "empty", "dry_run": False},
                headers=target.admin,
            )
            assert answer.status_code == 409, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert "newer" in answer.json()["detail"]
        plan = client.post(
            "/api/backups/newer-schema/restore", json={"mode": "empty"}, headers=target.admin
        ).json()
        assert plan["can_restore"] is False
        assert plan["compatibility"] == "incompatible"
    assert target.rows()["programs"] == []

    started = start_restore(target, "older-format", mode="empty")
    assert started.status_code == 202, started.text
    state = finished_restore(target, "older-format", started.json()["id"])
    assert state["status"] == "completed", state
    assert target.rows() == rows


def test_older_schema_restores_forward_and_a_failed_health_check_rolls_back(
    make_installation: MakeInstallation,
) -> None:
    old = make_installation()
    subprocess.run(
        [sys.executable, "-m", "loupe_catalog", "migrate", "--down-to", "0004"],
        env=old.env("catalog"),
        check=True,
        capture_output=True,
    )
    old.start("backup")
    # Rows as a catalog at revision 0004 wrote them; the image record has no blob.
    old.sql(
        "INSERT INTO audit_log (actor, role, action, target) "
        "VALUES ('old', 'admin', 'programs.create', 'program:1')"
    )
    old.sql(
        "INSERT INTO results (result_id, captured_at, line_id, verdict) "
        "VALUES (gen_random_uuid(), '2026-01-02T03:04:05Z', 'line-old', 'pass')"
    )
    old.sql(
        "INSERT INTO image_records (sha256, size, width, height, content_type, kind) "
        "VALUES (encode(sha256('no such image'::bytea), 'hex'), 1, 1, 1, 'image/png', 'master')"
    )
    broken = backup(old)
    assert broken["alembic_revisions"] == ["0004"]

    target = make_installation(backup_bucket=old.backup_bucket)
    target.start("backup")
    head = target.rows()["alembic_version"]
    with target.client("backup") as client:
        plan = client.post(
            f"/api/backups/{broken['id']}/restore", json={"mode": "empty"}, headers=target.admin
        ).json()
    assert plan["compatibility"] == "migratable", plan
    assert plan["can_restore"] is True
    before = target.rows()

    started = start_restore(target, broken["id"], mode="empty")
    state = finished_restore(target, broken["id"], started.json()["id"])
    assert state["status"] == "failed"
    assert "have no blob" in state["error"]  # the health check, before the commit
    assert state["rolled_back"] is True
    assert target.rows() == before

    old.sql("DELETE FROM image_records")
    fixed = backup(old)
    started = start_restore(target, fixed["id"], mode="empty")
    state = finished_restore(target, fixed["id"], started.json()["id"])
    assert state["status"] == "completed", state
    assert state["compatibility"] == "migratable"
    restored, backed = target.rows(), old.rows()
    assert restored["alembic_version"] == head  # the schema stays the running one
    for table, found in backed.items():
        if table != "alembic_version":
            assert restored[table] == found, table
    newer = set(restored) - set(backed)
    assert newer  # tables added after 0004, empty
    assert all(restored[t] == [] for t in newer)
