"""The frontend's JSON backup document: exported here, imported by the catalog's legacy
migration into another installation with the same programs and master images."""

import base64
import hashlib
from typing import Any

from loupe_shared.kit.auth import Role
from tests.backup.conftest import Installation, MakeInstallation


def _export(inst: Installation, token: dict[str, str], query: str = "") -> Any:
    with inst.client("backup") as client:
        return client.get(f"/api/exports{query}", headers=token)


def test_export_and_import_through_the_legacy_migration(
    source: Installation, make_installation: MakeInstallation
) -> None:
    operator = source.token(Role.OPERATOR)
    answer = _export(source, operator)
    assert answer.status_code == 200, answer.text
    assert "attachment" in answer.headers["content-disposition"]
    document = answer.json()
    assert document["version"] == "1.0.0"
    programs = document["data"]["programs"]
    assert len(programs) == source.sql("SELECT count(*) FROM programs")[0][0]
    assert document["metadata"]["programCount"] == len(programs)
    with_image = [p for p in programs if p["masterImageSha256"]]
    assert len(document["data"]["images"]) == len(with_image) > 0
    for program in with_image:
        url = document["data"]["images"][program["id"]]
        header, _, payload = url.partition(",")
        assert header == "data:image/png;base64"
        assert hashlib.sha256(base64.b64decode(payload)).hexdigest() == program["masterImageSha256"]
    results = source.sql("SELECT count(*) FROM results")[0][0]
    assert len(document["data"]["results"]) == min(results, 1000)
    assert document["data"]["logs"]

    small = _export(source, operator, "?images=false&results=5&logs=0").json()
    assert small["data"]["images"] == {}
    assert len(small["data"]["results"]) == 5
    assert small["data"]["logs"] == []
    assert _export(source, operator, "?results=-1").status_code == 422
    assert _export(source, source.token(Role.VIEWER)).status_code == 403

    target = make_installation()
    target.start("images")
    target.start("catalog")
    with target.client("catalog") as catalog:
        applied = catalog.post(
            "/api/migrations/legacy?dry_run=false",
            content=answer.content,
            headers={**target.admin, "Content-Type": "application/json"},
        )
        assert applied.status_code == 201, applied.text
        imported = catalog.get("/api/programs?archived=all&limit=100", headers=target.admin)
    by_name = {p["name"]: p for p in imported.json()["items"]}
    for program in programs:
        assert by_name[program["name"]]["master_image_sha256"] == program["masterImageSha256"]


def test_export_refuses_more_than_its_limit(source: Installation) -> None:
    source.stop("backup")
    source.start("backup", export_max_image_bytes="100")
    try:
        answer = _export(source, source.admin)
        assert answer.status_code == 413
        assert "archive" in answer.json()["detail"]
    finally:
        source.stop("backup")
        source.start("backup")
