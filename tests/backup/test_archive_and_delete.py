"""Archives: a download imported into a new installation (new database, new buckets) restores
identically; a tampered or cut archive is refused before anything is written. Deleting a set
collects the blobs no other set uses. Backup endpoints are rate limited."""

import tarfile
from pathlib import Path

from loupe_shared.kit.auth import Role
from tests.backup.conftest import (
    Installation,
    MakeInstallation,
    backup,
    finished_restore,
    png,
    settle_images,
    start_restore,
    stored_objects,
    upload,
)
from tests.support import eventually


def _download(inst: Installation, backup_id: str, path: Path) -> None:
    operator = inst.token(Role.OPERATOR)
    with (
        inst.client("backup") as client,
        client.stream("GET", f"/api/backups/{backup_id}/archive", headers=operator) as answer,
    ):
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/x-tar"
        with path.open("wb") as out:
            for chunk in answer.iter_bytes():
                out.write(chunk)
        assert int(answer.headers["content-length"]) == path.stat().st_size


def _import(inst: Installation, path: Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    with inst.client("backup") as client, path.open("rb") as body:
        answer = client.post(
            "/api/backups/import",
            content=body,
            headers={**inst.admin, "Content-Type": "application/x-tar"},
        )
    return answer.status_code, answer.json()


def _bucket_keys(inst: Installation) -> list[str]:
    return sorted(
        o.object_name or "" for o in inst.s3.list_objects(inst.backup_bucket, recursive=True)
    )


def test_archive_round_trip_into_new_buckets_and_tampering_refused(
    source: Installation, make_installation: MakeInstallation, tmp_path: Path
) -> None:
    settle_images(source)
    source.stop("catalog")
    try:
        done = backup(source)
        rows, images = source.rows(), stored_objects(source)
    finally:
        source.start("catalog")
    archive = tmp_path / "set.tar"
    _download(source, done["id"], archive)
    query = "SELECT count(*) FROM audit_log WHERE action = 'backup.download' AND target = $t$"
    audited = query.replace("$t$", f"'backup:{done['id']}'")
    eventually("the download is audited", lambda: bool(source.sql(audited)[0][0]))

    target = make_installation()  # its own database, images bucket and backup bucket
    target.start("backup")
    before = _bucket_keys(target)

    with tarfile.open(archive) as tar:
        blob = next(m for m in tar.getmembers() if "/blobs/" in m.name)
    flipped = tmp_path / "flipped.tar"
    data = bytearray(archive.read_bytes())
    data[blob.offset_data + blob.size // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[: blob.offset_data + 100])
    for bad in (flipped, cut):
        status, problem = _import(target, bad)
        assert status == 422, problem
        assert "refused" in problem["detail"]
    assert _bucket_keys(target) == before  # nothing was written

    status, imported = _import(target, archive)
    assert status == 201, imported
    assert imported["status"] == "completed"
    assert imported["kind"] == "imported"
    with target.client("backup") as client:
        report = client.post(f"/api/backups/{imported['id']}/verify", headers=target.admin)
        assert report.json()["ok"] is True, report.text
    started = start_restore(target, imported["id"], mode="empty")
    assert started.status_code == 202, started.text
    assert finished_restore(target, imported["id"], started.json()["id"])["status"] == "completed"
    assert target.rows() == rows
    assert stored_objects(target) == images


def test_delete_collects_blobs_no_other_set_uses(source: Installation) -> None:
    engineer = source.token(Role.ENGINEER)
    gone = upload(source, png(8080), engineer)
    first = backup(source)
    with source.client("images") as images:
        deleted = images.delete(f"/api/images/{gone}", headers=engineer)
        assert deleted.status_code in (200, 204), deleted.text
    second = backup(source)
    key = f"blobs/{gone[:2]}/{gone}"
    kept = _bucket_keys(source)
    assert key in kept

    with source.client("backup") as client:
        answer = client.delete(f"/api/backups/{first['id']}", headers=source.admin)
        assert answer.status_code == 200, answer.text
        assert answer.json()["blobs_collected"] >= 1
        assert client.get(f"/api/backups/{first['id']}", headers=source.admin).status_code == 404
        after = _bucket_keys(source)
        assert key not in after
        assert not [k for k in after if k.startswith(f"sets/{first['id']}/")]
        # What the other sets share stays: the later set is whole.
        report = client.post(f"/api/backups/{second['id']}/verify", headers=source.admin)
        assert report.json()["ok"] is True, report.text


def test_backup_endpoints_are_rate_limited(source: Installation) -> None:
    operator = source.token(Role.OPERATOR)
    with source.client("backup") as client:
        codes = [
            client.post("/api/backups/nope/verify", headers=operator).status_code for _ in range(60)
        ]
        assert set(codes) == {404}
        limited = client.post("/api/backups/nope/verify", headers=operator)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        # Another token is not affected.
        other = client.post("/api/backups/nope/verify", headers=source.token(Role.OPERATOR))
        assert other.status_code == 404
