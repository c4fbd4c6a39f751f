"""Verification finds every missing, corrupt and extra item; a backup that dies or fails is
never listed as completed and leaves nothing a later backup trusts."""

import io

from loupe_shared.kit.auth import Role
from tests.backup.conftest import (
    SNAPSHOT_WAITING,
    Installation,
    backup,
    events,
    png,
    table_locked,
    upload,
    wait_backup,
    waiting_on_lock,
)
from tests.support import CuttableProxy, eventually


def _blob_key(sha: str) -> str:
    return f"blobs/{sha[:2]}/{sha}"


def test_verify_finds_flipped_byte_deleted_blob_truncated_file_and_extra(
    source: Installation,
) -> None:
    engineer = source.token(Role.ENGINEER)
    flipped, deleted = upload(source, png(501), engineer), upload(source, png(502), engineer)
    done = backup(source)
    assert done["status"] == "completed"
    s3, bucket, prefix = source.s3, source.backup_bucket, f"sets/{done['id']}/"
    with source.client("backup") as client:
        sound = client.post(f"/api/backups/{done['id']}/verify", headers=source.admin)
        assert sound.status_code == 200, sound.text
        assert sound.json()["ok"] is True
        assert sound.json()["checked_files"] == sum(
            1 for k in done["counts"] if k.startswith("rows.")
        )

        response = s3.get_object(bucket, _blob_key(flipped))
        data = bytearray(response.read())
        response.close()
        data[len(data) // 2] ^= 0x01
        s3.put_object(bucket, _blob_key(flipped), io.BytesIO(bytes(data)), len(data))
        s3.remove_object(bucket, _blob_key(deleted))
        response = s3.get_object(bucket, f"{prefix}data/results.csv")
        text = response.read()
        response.close()
        s3.put_object(bucket, f"{prefix}data/results.csv", io.BytesIO(text[:-20]), len(text) - 20)
        s3.put_object(bucket, f"{prefix}data/stray.csv", io.BytesIO(b"x"), 1)

        report = client.post(f"/api/backups/{done['id']}/verify", headers=source.admin).json()
        assert report["ok"] is False
        assert report["corrupt"] == sorted([_blob_key(flipped), "data/results.csv"])
        assert report["missing"] == [_blob_key(deleted)]
        assert report["extra"] == ["data/stray.csv"]
        # The outcome is kept with the set.
        kept = client.get(f"/api/backups/{done['id']}", headers=source.admin).json()
        assert kept["verification"]["corrupt"] == report["corrupt"]

    # The corrupt blob was moved aside: the next backup copies both blobs again and is sound.
    again = backup(source, {"kind": "incremental"})
    assert again["status"] == "completed"
    with source.client("backup") as client:
        healed = client.post(f"/api/backups/{again['id']}/verify", headers=source.admin).json()
    assert healed["ok"] is True, healed


def test_backup_killed_midway_is_failed_and_later_backups_are_sound(
    source: Installation,
) -> None:
    with source.client("backup") as client:
        with table_locked(source, "results"):
            started = client.post("/api/backups", json={}, headers=source.admin)
            assert started.status_code == 202
            killed = started.json()["id"]
            eventually("the snapshot waits on the lock", lambda: waiting_on_lock(source))
            source.kill("backup")
        source.start("backup")

        def marked() -> bool:
            found = client.get(f"/api/backups/{killed}", headers=source.admin).json()
            return bool(found["status"] == "failed" and found["error"])

        # Marked once the killed process's lease on the job expired (BACKUP_LEASE_TTL_S).
        eventually("the killed set marked interrupted", marked, timeout_s=30)
        state = client.get(f"/api/backups/{killed}", headers=source.admin).json()
        assert state["status"] == "failed"
        assert "interrupted" in state["error"]
        assert state["compatibility"] is None
        listed = client.get("/api/backups", headers=source.admin).json()["items"]
        assert next(i for i in listed if i["id"] == killed)["status"] == "failed"
        # Not completed, so nothing can be restored, verified or built upon from it.
        refused = client.post(
            f"/api/backups/{killed}/restore", json={"dry_run": True}, headers=source.admin
        )
        assert refused.status_code == 409
        later = backup(source, {"kind": "incremental"})
        assert later["parent_id"] != killed
        report = client.post(f"/api/backups/{later['id']}/verify", headers=source.admin).json()
        assert report["ok"] is True


def test_failed_backup_is_listed_failed_and_announced(source: Installation) -> None:
    """The database connection of the snapshot is cut midway: the set fails, loudly."""
    with source.client("backup") as client, table_locked(source, "results"):
        started = client.post("/api/backups", json={}, headers=source.admin).json()
        eventually("the snapshot waits on the lock", lambda: waiting_on_lock(source))
        source.sql(f"SELECT pg_terminate_backend(pid) {SNAPSHOT_WAITING.format(source.database)}")
    with source.client("backup") as client:
        state = wait_backup(client, source, started["id"])
    assert state["status"] == "failed"
    assert state["error"]
    failed = [e for e in events(source, "backup.failed") if e["backup_id"] == started["id"]]
    assert len(failed) == 1
    assert failed[0]["status"] == "failed"


def test_object_store_cut_midway_fails_the_backup_and_later_ones_are_sound(
    source: Installation,
) -> None:
    host, _, port = source.platform.endpoints.s3_endpoint.rpartition(":")
    proxy = CuttableProxy(host, int(port))
    source.stop("backup")
    source.start("backup", s3_endpoint=proxy.endpoint)
    try:
        with source.client("backup") as client:
            with table_locked(source, "results"):
                started = client.post("/api/backups", json={}, headers=source.admin).json()
                eventually("the snapshot waits on the lock", lambda: waiting_on_lock(source))
                proxy.cut()  # the copies after the snapshot find no object store
            # The failure is announced on NATS while its record cannot even be saved.
            eventually(
                "backup.failed announced",
                lambda: any(
                    e["backup_id"] == started["id"] for e in events(source, "backup.failed")
                ),
                timeout_s=30,
            )
            down = client.get(f"/api/backups/{started['id']}", headers=source.admin)
            assert down.status_code == 503  # its record cannot be read either: said so
            assert down.headers["content-type"] == "application/problem+json"
            proxy.restore()
            state = wait_backup(client, source, started["id"])
        assert state["status"] == "failed"
    finally:
        proxy.close()
        source.stop("backup")
        source.start("backup")
    later = backup(source, {"kind": "incremental"})
    assert later["status"] == "completed"
    assert later["parent_id"] != started["id"]
    with source.client("backup") as client:
        report = client.post(f"/api/backups/{later['id']}/verify", headers=source.admin).json()
    assert report["ok"] is True
