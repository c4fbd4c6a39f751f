"""The legacy migration through the gateway, against the real catalog, images service,
PostgreSQL and S3 server."""

import base64
import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from loupe_shared.kit.auth import Role
from tests.conftest import TokenMaker, auth
from tests.legacy.conftest import Migrator
from tests.legacy.helpers import data_url, image_bytes, legacy_program, renamed_fixture

pytestmark = pytest.mark.e2e
FIXTURE_OUTCOMES = [
    ("imported", None),
    ("imported", None),
    ("imported", None),
    ("invalid", "not_an_image"),
    ("imported", None),
]


def outcomes(report: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(item["outcome"], item["reason_code"]) for item in report["items"]]


def latest_run_id(gateway: httpx.Client, headers: dict[str, str]) -> str | None:
    answer = gateway.get("/api/migrations", params={"limit": 1}, headers=headers)
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    return items[0]["id"] if items else None


def as_shape(programs: list[dict[str, Any]], shape: str) -> dict[str, Any] | list[Any]:
    if shape == "array":
        return programs
    if shape == "localstorage":
        return {"vision_programs": json.dumps(programs), "vision_theme": json.dumps("dark")}
    stripped = json.loads(json.dumps(programs))
    images = {
        p["id"]: p["config"].pop("masterImage") for p in stripped if "masterImage" in p["config"]
    }
    return {
        "version": "1.0.0",
        "timestamp": "2025-10-08T10:30:00Z",
        "metadata": {"programCount": len(stripped)},
        "data": {"programs": stripped, "images": images},
    }


@pytest.mark.parametrize("shape", ["array", "localstorage", "backup"])
def test_a_dry_run_reports_every_program_and_writes_nothing(
    migrator: Migrator, gateway: httpx.Client, engineer: dict[str, str], shape: str
) -> None:
    programs = renamed_fixture()
    before = latest_run_id(gateway, engineer)
    report = migrator.run(as_shape(programs, shape), dry_run=True)
    assert report["dry_run"] is True
    assert report["run_id"] is None
    assert report["input_shape"] == shape
    assert outcomes(report) == FIXTURE_OUTCOMES
    assert report["items"][3]["reason"] == "the bytes are not an image (declared image/jpeg)"
    assert report["totals"] == {
        "programs": 5,
        "imported": 4,
        "revised": 0,
        "already_migrated": 0,
        "duplicate": 0,
        "invalid": 1,
        "failed": 0,
    }
    assert latest_run_id(gateway, engineer) == before
    name = programs[0]["name"]
    listed = gateway.get("/api/programs", params={"q": name}, headers=engineer).json()
    assert listed["items"] == []


def test_apply_imports_verifies_records_and_is_idempotent(
    migrator: Migrator, gateway: httpx.Client, engineer: dict[str, str], admin_token: str
) -> None:
    programs = renamed_fixture()
    body = json.dumps({"vision_programs": json.dumps(programs)}).encode()
    answer = migrator.post(body, dry_run=False)
    assert answer.status_code == 201, answer.text
    report = answer.json()
    run_id = report["run_id"]
    assert answer.headers["location"] == f"/api/migrations/{run_id}"
    assert outcomes(report) == FIXTURE_OUTCOMES
    assert report["input_sha256"] == hashlib.sha256(body).hexdigest()

    for legacy, item in zip(programs, report["items"], strict=True):
        if item["outcome"] != "imported":
            assert item["program_id"] is None
            continue
        program = gateway.get(f"/api/programs/{item['program_id']}", headers=engineer).json()
        assert program["legacy_id"] == legacy["id"]
        assert program["name"] == legacy["name"]
        assert program["migration_status"] == "migrated"
        assert program["revision"] == 1
        assert program["schema_version"] == 3
        assert program["data_checksum"] == item["data_checksum"]
        kinds = [t["type"] for t in program["config"]["tools"]]
        legacy_kinds = [t["type"] for t in legacy["config"]["tools"]]
        assert kinds == ["difference" if k == "diff" else k for k in legacy_kinds]
        assert program["config"]["acquisition"]["exposure"] == legacy["config"].get("exposure")
        image = legacy["config"].get("masterImage")
        if image is None:
            assert program["master_image_sha256"] is None
            continue
        stored = gateway.get(f"/api/images/{program['master_image_sha256']}", headers=engineer)
        assert stored.status_code == 200
        assert stored.content == base64.b64decode(image.split(",", 1)[1])

    run = gateway.get(f"/api/migrations/{run_id}", headers=engineer).json()
    assert run["started_by"] == "legacy-migrator"
    started, finished = (datetime.fromisoformat(run[k]) for k in ("started_at", "finished_at"))
    assert started < finished
    assert run["input_sha256"] == report["input_sha256"]
    assert run["input_shape"] == "localstorage"
    assert run["totals"] == report["totals"]
    assert [(i["outcome"], i["reason_code"]) for i in run["items"]] == FIXTURE_OUTCOMES
    assert [i["program_id"] for i in run["items"]] == [i["program_id"] for i in report["items"]]
    assert latest_run_id(gateway, engineer) == run_id
    audit = gateway.get(
        "/api/audit", params={"target": f"migration-run:{run_id}"}, headers=auth(admin_token)
    ).json()["items"]
    assert [(a["action"], a["actor"]) for a in audit] == [
        ("migrations.legacy_apply", "legacy-migrator")
    ]

    # The same export again: nothing imported, every program already migrated.
    again = migrator.run(body, dry_run=False)
    assert again["run_id"] != run_id
    assert outcomes(again) == [
        ("already_migrated", None),
        ("already_migrated", None),
        ("already_migrated", None),
        ("invalid", "not_an_image"),
        ("already_migrated", None),
    ]
    assert again["totals"]["imported"] == 0
    assert [i["program_id"] for i in again["items"]] == [i["program_id"] for i in report["items"]]
    for item in again["items"]:
        if item["program_id"]:
            program = gateway.get(f"/api/programs/{item['program_id']}", headers=engineer).json()
            assert program["revision"] == 1


def test_a_changed_program_is_a_new_revision_and_rollbacks_undo_runs(
    migrator: Migrator, gateway: httpx.Client, engineer: dict[str, str], admin_token: str
) -> None:
    first = legacy_program(image=data_url(image_bytes(".png")))
    draft = legacy_program()
    run_a = migrator.run([first, draft], dry_run=False)
    assert outcomes(run_a) == [("imported", None), ("imported", None)]
    program_id = run_a["items"][0]["program_id"]

    changed = json.loads(json.dumps(first))
    changed["config"]["tools"][0]["threshold"] = 77
    changed["updatedAt"] = "2025-11-01T10:00:00.000Z"
    assert outcomes(migrator.run([changed, draft], dry_run=True)) == [
        ("revised", None),
        ("already_migrated", None),
    ]
    run_b = migrator.run([changed, draft], dry_run=False)
    assert outcomes(run_b) == [("revised", None), ("already_migrated", None)]
    assert run_b["items"][0]["program_id"] == program_id
    assert run_b["items"][0]["revision"] == 2
    program = gateway.get(f"/api/programs/{program_id}", headers=engineer).json()
    assert program["config"]["tools"][0]["threshold"] == 77
    assert program["legacy_id"] == first["id"]

    # Undo run B: the revised program gets its content from before back.
    undone = gateway.post(f"/api/migrations/{run_b['run_id']}/rollback", headers=engineer)
    assert undone.status_code == 200, undone.text
    assert [(i["program_id"], i["action"]) for i in undone.json()["items"]] == [
        (program_id, "reverted")
    ]
    program = gateway.get(f"/api/programs/{program_id}", headers=engineer).json()
    assert program["revision"] == 3
    assert program["config"]["tools"][0]["threshold"] == 30
    assert program["archived"] is False
    twice = gateway.post(f"/api/migrations/{run_b['run_id']}/rollback", headers=engineer)
    assert twice.status_code == 409
    assert twice.headers["content-type"] == "application/problem+json"
    # The change is pending again.
    assert outcomes(migrator.run([changed, draft], dry_run=True))[0] == ("revised", None)

    # Undo run A: its programs are archived and let go of their legacy ids.
    undone = gateway.post(f"/api/migrations/{run_a['run_id']}/rollback", headers=engineer)
    assert sorted(i["action"] for i in undone.json()["items"]) == ["archived", "archived"]
    for item in run_a["items"]:
        program = gateway.get(f"/api/programs/{item['program_id']}", headers=engineer).json()
        assert program["archived"] is True
        assert program["legacy_id"] is None
        assert program["migration_status"] == "rolled_back"
    run = gateway.get(f"/api/migrations/{run_a['run_id']}", headers=engineer).json()
    assert run["rolled_back_by"] == "legacy-migrator"
    audit = gateway.get(
        "/api/audit",
        params={"target": f"migration-run:{run_a['run_id']}"},
        headers=auth(admin_token),
    ).json()["items"]
    assert [a["action"] for a in audit] == ["migrations.legacy_rollback", "migrations.legacy_apply"]

    # A later run imports them afresh.
    again = migrator.run([first, draft], dry_run=False)
    assert outcomes(again) == [("imported", None), ("imported", None)]
    assert again["items"][0]["program_id"] != program_id


def test_images_the_server_has_are_not_sent_again(
    migrator: Migrator, gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    known, fresh = image_bytes(".png"), image_bytes(".jpg")
    stored = gateway.post(
        "/api/images",
        content=known,
        headers={**engineer, "Content-Type": "image/png"},
    )
    assert stored.status_code == 201, stored.text
    report = migrator.run(
        [
            legacy_program(image=data_url(known)),
            legacy_program(image=data_url(fresh, "image/jpeg")),
            legacy_program(image=data_url(fresh, "image/jpeg")),
        ],
        dry_run=False,
    )
    assert outcomes(report) == [("imported", None)] * 3
    assert [i["image_sent"] for i in report["items"]] == [False, True, True]
    assert report["items"][1]["master_image_sha256"] == hashlib.sha256(fresh).hexdigest()


def test_name_clashes_and_repeated_ids_are_reported_per_program(
    migrator: Migrator, gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    taken = f"Taken {uuid.uuid4().hex[:8]}"
    created = gateway.post(
        "/api/programs",
        json={"name": taken, "config": {"schema_version": 3, "tools": []}},
        headers=engineer,
    )
    assert created.status_code == 201, created.text
    shared = f"Shared {uuid.uuid4().hex[:8]}"
    repeated = legacy_program()
    programs = [
        legacy_program(name=taken.upper()),
        legacy_program(name=shared),
        legacy_program(name=shared),
        repeated,
        repeated,
    ]
    report = migrator.run(programs, dry_run=False)
    assert outcomes(report) == [
        ("invalid", "name_clash"),
        ("imported", None),
        ("invalid", "name_clash"),
        ("imported", None),
        ("duplicate", "duplicate_legacy_id"),
    ]
    assert report["items"][2]["reason"].startswith("the program at position 1 of this export")
    listed = gateway.get("/api/programs", params={"q": shared}, headers=engineer).json()
    assert len(listed["items"]) == 1


def test_big_lying_and_undecodable_images_are_handled_per_program(
    migrator: Migrator, gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    jpeg = image_bytes(".jpg")
    png = bytearray(image_bytes(".png", 256, 256))
    png[60:-40] = bytes(len(png) - 100)  # the header and the end stay: only decoding tells
    huge = "data:image/png;base64," + "A" * (40 * 1024 * 1024)
    programs = [
        legacy_program(image=huge),
        legacy_program(image=data_url(jpeg, "image/png")),
        legacy_program(image=data_url(bytes(png))),
        legacy_program(),
    ]
    dry = migrator.run(programs, dry_run=True)
    assert outcomes(dry) == [
        ("invalid", "image_too_large"),
        ("imported", None),
        ("imported", None),
        ("imported", None),
    ]
    report = migrator.run(programs, dry_run=False)
    assert outcomes(report) == [
        ("invalid", "image_too_large"),
        ("imported", None),
        ("failed", "upload_refused"),
        ("imported", None),
    ]
    assert report["items"][1]["warnings"] == [
        "declared image/png, but the bytes are image/jpeg: stored as image/jpeg"
    ]
    sha = report["items"][1]["master_image_sha256"]
    served = gateway.head(f"/api/images/{sha}", headers=engineer)
    assert served.headers["content-type"] == "image/jpeg"
    assert report["items"][2]["program_id"] is None
    name = programs[2]["name"]
    assert gateway.get("/api/programs", params={"q": name}, headers=engineer).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'[{"id": "prog_1", "name": "cut', 400, "not JSON"),
        (b"", 422, "empty"),
        (b'"vision_programs"', 422, "got a JSON str"),
        (b'{"vision_programs": "[{\\"id\\": "}', 422, "not JSON"),
        (b'{"data": {"programs": {}}}', 422, "must be an array"),
        (
            json.dumps([{"id": f"p{i}", "name": f"n{i}"} for i in range(10_000)]).encode(),
            422,
            "at most 1000",
        ),
    ],
    ids=["truncated", "empty", "string", "bad-inner-json", "programs-object", "10000-programs"],
)
def test_unreadable_exports_are_refused_and_change_nothing(
    migrator: Migrator,
    gateway: httpx.Client,
    engineer: dict[str, str],
    body: bytes,
    status: int,
    words: str,
) -> None:
    before = latest_run_id(gateway, engineer)
    for dry_run in (True, False):
        answer = migrator.post(body, dry_run=dry_run)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert words in answer.json()["detail"]
    assert latest_run_id(gateway, engineer) == before


def test_migrating_needs_migrations_run(gateway: httpx.Client, make_token: TokenMaker) -> None:
    body = json.dumps([legacy_program()]).encode()
    anonymous = gateway.post("/api/migrations/legacy", content=body)
    assert anonymous.status_code == 401
    viewer = auth(make_token(Role.VIEWER))
    for answer in (
        gateway.post("/api/migrations/legacy", content=body, headers=viewer),
        gateway.get("/api/migrations", headers=viewer),
    ):
        assert answer.status_code == 403
        assert answer.headers["content-type"] == "application/problem+json"
    assert gateway.get(f"/api/migrations/{uuid.uuid4()}", headers=viewer).status_code == 403


def test_a_rollback_leaves_a_program_changed_since_as_it_is(
    migrator: Migrator, gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    first = legacy_program()
    migrator.run([first], dry_run=False)
    changed = json.loads(json.dumps(first))
    changed["config"]["exposure"] = 250
    run = migrator.run([changed], dry_run=False)
    program_id = run["items"][0]["program_id"]
    program = gateway.get(f"/api/programs/{program_id}", headers=engineer)
    edited = program.json()
    saved = gateway.put(
        f"/api/programs/{program_id}",
        json={
            "name": edited["name"],
            "description": "edited in Loupe",
            "tags": edited["tags"],
            "config": edited["config"],
        },
        headers={**engineer, "If-Match": program.headers["etag"]},
    )
    assert saved.status_code == 200, saved.text

    undone = gateway.post(f"/api/migrations/{run['run_id']}/rollback", headers=engineer).json()
    assert [(i["action"], i["reason"]) for i in undone["items"]] == [
        ("skipped", "changed since the run (now revision 3); left as it is")
    ]
    after = gateway.get(f"/api/programs/{program_id}", headers=engineer).json()
    assert (after["revision"], after["description"]) == (3, "edited in Loupe")


def test_runs_are_listed_newest_first_with_cursors(
    migrator: Migrator, gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    made = [migrator.run([legacy_program()], dry_run=False)["run_id"] for _ in range(3)]
    first = gateway.get("/api/migrations", params={"limit": 2}, headers=engineer).json()
    second = gateway.get(
        "/api/migrations", params={"limit": 2, "cursor": first["next_cursor"]}, headers=engineer
    ).json()
    listed = [r["id"] for r in first["items"] + second["items"]]
    assert listed[:3] == list(reversed(made))
    assert first["items"][0]["totals"]["imported"] == 1
    bad = gateway.get("/api/migrations", params={"cursor": "nope"}, headers=engineer)
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    for answer in (
        gateway.get(f"/api/migrations/{uuid.uuid4()}", headers=engineer),
        gateway.post(f"/api/migrations/{uuid.uuid4()}/rollback", headers=engineer),
    ):
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"


def test_an_export_of_60_mb_passes_the_gateway(migrator: Migrator) -> None:
    # JPEG-looking bytes: a dry run reads only an image's start and end.
    fake_jpeg = b"\xff\xd8\xff\xe0" + bytes(11 * 1024 * 1024) + b"\xff\xd9"
    programs = [legacy_program(image=data_url(fake_jpeg, "image/jpeg")) for _ in range(4)]
    body = json.dumps(programs).encode()
    assert len(body) > 60_000_000
    report = migrator.run(body, dry_run=True)
    assert outcomes(report) == [("imported", None)] * 4
