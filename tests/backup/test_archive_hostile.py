"""An imported archive is hostile input: every kind of tampering is refused with a 422 naming
what is wrong, and nothing is stored (the backup list and bucket unchanged, no file written
outside the work folder). The dry run of an imported set warns that it was imported."""

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loupe_shared.kit.auth import Role
from tests.backup.conftest import Installation, MakeInstallation, backup
from tests.support import eventually

MANIFEST = "loupe-backup/manifest.json"
MEMBER_CAP = 1024 * 1024
Members = list[tuple[tarfile.TarInfo, bytes]]


def _download(inst: Installation, backup_id: str) -> Members:
    with inst.client("backup") as client:
        answer = client.get(f"/api/backups/{backup_id}/archive", headers=inst.token(Role.OPERATOR))
    assert answer.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def _tar(members: Members) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            copy = tarfile.TarInfo(info.name)
            copy.type, copy.linkname, copy.mode = info.type, info.linkname, info.mode
            copy.size = len(data) if info.isfile() else 0
            tar.addfile(copy, io.BytesIO(data) if info.isfile() else None)
    return out.getvalue()


def _edited(members: Members, edit: Callable[[dict[str, Any]], None]) -> bytes:
    manifest = json.loads(members[0][1])
    edit(manifest)
    return _tar([(members[0][0], json.dumps(manifest).encode()), *members[1:]])


def _deep(members: Members) -> bytes:
    """The manifest with a value nested 10,000 deep (written as text: no JSON library of the
    test's own would nest that deep)."""
    manifest = json.loads(members[0][1])
    manifest.pop("source_problems", None)
    text = json.dumps(manifest)[:-1] + ', "source_problems": [' + "[" * 10_000 + "]" * 10_000
    return _tar([(members[0][0], (text + "]}").encode()), *members[1:]])


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


def _huge_manifest() -> bytes:
    """A tar whose manifest member says 200 MB; only its header and a little of it are sent
    (refused on the header, nothing of it is read)."""
    info = tarfile.TarInfo(MANIFEST)
    info.size = 200 * 1024 * 1024
    return info.tobuf(format=tarfile.PAX_FORMAT) + b"{" + b" " * 4096


def _huge_extended_header() -> bytes:
    """A PAX header that says it is 1 GB (tar readers read those whole)."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, 1024**3
    return info.tobuf(format=tarfile.USTAR_FORMAT) + b"0" * 4096


def _table(name: str) -> Callable[[dict[str, Any]], None]:
    def edit(manifest: dict[str, Any]) -> None:
        manifest["tables"][0]["table"] = name
        manifest["tables"][0]["file"] = f"data/{name}.csv"

    return edit


def _partition_bound(manifest: dict[str, Any]) -> None:
    results = next(t for t in manifest["tables"] if t["table"] == "results")
    results["partitions"].append(
        {
            "name": "results_evil",
            "bound": "FOR VALUES FROM ('2030-01-01 00:00:00+00') TO "
            "('2030-02-01 00:00:00+00'); SELECT 1/0",
        }
    )


def _data_file(manifest: dict[str, Any]) -> None:
    manifest["tables"][0]["file"] = "../x"


def _object_key(manifest: dict[str, Any]) -> None:
    manifest["objects"][0]["key"] = "blobs/../../x"


@pytest.fixture(scope="module")
def original(source: Installation) -> Members:
    return _download(source, backup(source)["id"])


CASES: dict[str, tuple[Callable[[Members], bytes], str]] = {
    "table name with ../": (lambda m: _edited(m, _table("../../evil")), "tables.0.table"),
    "partition bound with SQL": (lambda m: _edited(m, _partition_bound), "partition bound"),
    "data file named ../x": (lambda m: _edited(m, _data_file), "data file"),
    "object key with ..": (lambda m: _edited(m, _object_key), "objects.0.key"),
    "huge manifest": (lambda m: _huge_manifest(), "above the limit"),
    "huge extended header": (lambda m: _huge_extended_header(), "extended tar header"),
    "deeply nested manifest": (_deep, "nested"),
    "unknown table": (lambda m: _edited(m, _table("no_such_table")), "not a table"),
    "member above the cap": (
        lambda m: _tar([*m, _file("loupe-backup/blobs/ab/big", b"\0" * (MEMBER_CAP + 1))]),
        "above the limit",
    ),
    "symlink member": (
        lambda m: _tar([*m, _link("loupe-backup/blobs/ab/link", "/etc/passwd", tarfile.SYMTYPE)]),
        "is a link",
    ),
    "hard link member": (
        lambda m: _tar([*m, _link("loupe-backup/blobs/ab/hard", MANIFEST, tarfile.LNKTYPE)]),
        "is a link",
    ),
    "member with ..": (lambda m: _tar([*m, _file("loupe-backup/../../x")]), "'..'"),
    "absolute member": (lambda m: _tar([*m, _file("/tmp/loupe-x")]), "absolute"),
}


def _bucket(inst: Installation) -> list[str]:
    return sorted(
        o.object_name or "" for o in inst.s3.list_objects(inst.backup_bucket, recursive=True)
    )


def test_tampered_archives_are_refused_and_nothing_is_stored(
    original: Members, make_installation: MakeInstallation, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    target = make_installation()
    target.start("backup", work_dir=str(work), import_member_max_bytes=str(MEMBER_CAP))
    outside = sorted(p.name for p in tmp_path.iterdir())
    with target.client("backup") as client:
        listed = client.get("/api/backups", headers=target.admin).json()["items"]
        bucket = _bucket(target)
        for case, (make, named) in CASES.items():
            answer = client.post(
                "/api/backups/import",
                content=make(original),
                headers={**target.admin, "Content-Type": "application/x-tar"},
            )
            assert answer.status_code == 422, (case, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert named in answer.json()["detail"], (case, answer.json()["detail"])
            assert list(work.iterdir()) == [], case
        assert client.get("/api/backups", headers=target.admin).json()["items"] == listed
        assert _bucket(target) == bucket
    assert sorted(p.name for p in tmp_path.iterdir()) == outside
    assert not Path("/tmp/loupe-x").exists()


def test_imported_archive_dry_run_warns(
    original: Members, make_installation: MakeInstallation
) -> None:
    target = make_installation()
    target.start("images")
    target.start("catalog")  # it writes the audit records of the import and the verify
    target.start("backup")
    with target.client("backup") as client:
        imported = client.post(
            "/api/backups/import",
            content=_tar(original),
            headers={**target.admin, "Content-Type": "application/x-tar"},
        )
        assert imported.status_code == 201, imported.text
        backup_id = imported.json()["id"]
        assert client.post(f"/api/backups/{backup_id}/verify", headers=target.admin).json()["ok"]
        eventually(
            "the import and the verify audited",
            lambda: target.sql("SELECT count(*) FROM audit_log")[0][0] >= 2,
        )
        plan = client.post(
            f"/api/backups/{backup_id}/restore", json={"mode": "empty"}, headers=target.admin
        ).json()
    # A fresh installation after an import (and its verify, both audited) is still empty.
    assert plan["can_restore"] is True, plan
    assert plan["kind"] == "imported"
    assert any(w.startswith("imported archive") for w in plan["warnings"]), plan
    assert plan["tables"]["programs"]["backup_rows"] >= 3
    assert plan["objects"] >= 6
    # Tokens of an imported archive were issued elsewhere: put back only when asked for.
    assert plan["tokens"]["in_backup"] >= 1
    assert plan["tokens"]["restored"] is False
    assert any("restore_tokens" in w for w in plan["warnings"]), plan
