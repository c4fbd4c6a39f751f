"""Programs through the gateway: revisions, ETags, validation, names, lists, audit, references."""

import hashlib
import json
import threading
import uuid
from typing import Any

import httpx
import pytest

from loupe_shared.kit.auth import Role
from loupe_shared.kit.settings import NatsSettings
from tests.catalog.helpers import config_v3, new_program, random_sha, stored_image
from tests.conftest import TokenMaker, auth


@pytest.fixture(scope="module")
def engineer(make_token: TokenMaker) -> dict[str, str]:
    return auth(make_token(Role.ENGINEER, "engineer-tests"))


def _create(gateway: httpx.Client, headers: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    answer = gateway.post("/api/programs", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer


def _checksum(config: dict[str, Any], sha: str | None) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode() + b"\n" + (sha or "").encode()).hexdigest()


def test_create_and_get(
    gateway: httpx.Client, engineer: dict[str, str], nats_settings: NatsSettings, admin_token: str
) -> None:
    sha = stored_image(nats_settings, gateway, admin_token)
    created = _create(gateway, engineer, new_program(master_image_sha256=sha))
    body = created.json()
    assert created.headers["location"] == f"/api/programs/{body['id']}"
    assert body["revision"] == 1
    assert body["schema_version"] == 3
    assert body["config"]["alignment"]["method"] == "ecc"  # defaults filled in
    assert body["data_checksum"] == _checksum(body["config"], sha)
    assert body["migration_status"] == "native"
    assert body["last_backup_at"] is None
    fetched = gateway.get(f"/api/programs/{body['id']}", headers=engineer)
    assert fetched.json() == body
    assert fetched.headers["etag"] == created.headers["etag"]


def test_legacy_config_is_upgraded(gateway: httpx.Client, engineer: dict[str, str]) -> None:
    legacy = {
        "tools": [
            {
                "id": "tool_0",
                "type": "diff",
                "name": "Check",
                "roi": {"x": 1, "y": 2, "width": 3, "height": 4},
                "threshold": 20,
                "minDefectArea": 22,
            }
        ],
        "triggerMode": "internal",
        "exposure": 100,
    }
    body = _create(gateway, engineer, new_program(config=legacy)).json()
    tool = body["config"]["tools"][0]
    assert tool["type"] == "difference"
    assert tool["min_defect_area"] == 22
    assert tool["enabled"] is True
    assert body["config"]["acquisition"] == {"trigger_mode": "internal", "exposure": 100.0}


def test_update_makes_a_revision_and_stale_etag_is_412(
    gateway: httpx.Client, engineer: dict[str, str], admin_token: str
) -> None:
    created = _create(gateway, engineer, new_program())
    program_id, etag = created.json()["id"], created.headers["etag"]
    change = new_program(
        name=created.json()["name"], config=config_v3(threshold=30), message="tighter"
    )

    missing = gateway.put(f"/api/programs/{program_id}", json=change, headers=engineer)
    assert missing.status_code == 428

    updated = gateway.put(
        f"/api/programs/{program_id}", json=change, headers={**engineer, "If-Match": etag}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["revision"] == 2
    assert updated.headers["etag"] != etag

    stale = gateway.put(
        f"/api/programs/{program_id}",
        json=new_program(name="Should not land", config=config_v3(threshold=99)),
        headers={**engineer, "If-Match": etag},
    )
    assert stale.status_code == 412
    assert stale.json()["current_etag"] == updated.headers["etag"]
    after = gateway.get(f"/api/programs/{program_id}", headers=engineer).json()
    assert after["revision"] == 2
    assert after["name"] == created.json()["name"]
    audit = gateway.get(
        "/api/audit", params={"target": f"program:{program_id}"}, headers=auth(admin_token)
    ).json()
    assert [e["action"] for e in audit["items"]] == ["programs.update", "programs.create"]

    # Saving the same content again makes no new revision.
    same = gateway.put(
        f"/api/programs/{program_id}",
        json=change,
        headers={**engineer, "If-Match": updated.headers["etag"]},
    )
    assert same.status_code == 200
    assert same.json()["revision"] == 2


def test_concurrent_updates_one_wins(gateway: httpx.Client, engineer: dict[str, str]) -> None:
    created = _create(gateway, engineer, new_program())
    program_id, etag, name = created.json()["id"], created.headers["etag"], created.json()["name"]
    codes: list[int] = []

    def save(threshold: float) -> None:
        with httpx.Client(base_url=str(gateway.base_url), timeout=15) as client:
            answer = client.put(
                f"/api/programs/{program_id}",
                json=new_program(name=name, config=config_v3(threshold=threshold)),
                headers={**engineer, "If-Match": etag},
            )
            codes.append(answer.status_code)

    threads = [threading.Thread(target=save, args=(t,)) for t in (31.0, 32.0, 33.0, 34.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200, 412, 412, 412]
    assert gateway.get(f"/api/programs/{program_id}", headers=engineer).json()["revision"] == 2


def test_revisions_are_immutable_and_diffable(
    gateway: httpx.Client, engineer: dict[str, str], nats_settings: NatsSettings, admin_token: str
) -> None:
    first_image = stored_image(nats_settings, gateway, admin_token)
    second_image = stored_image(nats_settings, gateway, admin_token)
    created = _create(gateway, engineer, new_program(master_image_sha256=first_image))
    program_id, name = created.json()["id"], created.json()["name"]
    changed = config_v3(threshold=50, width=200)
    changed["tools"] = changed["tools"][:1]
    gateway.put(
        f"/api/programs/{program_id}",
        json=new_program(
            name=name, config=changed, master_image_sha256=second_image, tags=["test", "v2"]
        ),
        headers={**engineer, "If-Match": created.headers["etag"]},
    ).raise_for_status()

    history = gateway.get(f"/api/programs/{program_id}/revisions", headers=engineer).json()
    assert [r["revision"] for r in history["items"]] == [2, 1]
    first = gateway.get(f"/api/programs/{program_id}/revisions/1", headers=engineer).json()
    assert first["config"] == created.json()["config"]
    assert first["master_image_sha256"] == first_image

    diff = gateway.get(
        f"/api/programs/{program_id}/diff", params={"from": 1, "to": 2}, headers=engineer
    ).json()
    assert diff["master_image"] == {"before": first_image, "after": second_image}
    assert diff["fields"]["tags"] == {"before": ["test"], "after": ["test", "v2"]}
    paths = {c["path"]: c for c in diff["config"]}
    assert paths["tools[id=tool_0].threshold"]["before"] == 25.0
    assert paths["tools[id=tool_0].threshold"]["after"] == 50.0
    assert paths["tools[id=tool_0].roi.width"]["change"] == "changed"
    assert paths["tools[id=tool_1].type"]["change"] == "removed"
    missing = gateway.get(f"/api/programs/{program_id}/revisions/9", headers=engineer)
    assert missing.status_code == 404

    refs = gateway.get(f"/api/image-records/{first_image}/references", headers=engineer).json()
    assert refs["referenced"] is True
    assert refs["programs"] == [
        {"program_id": program_id, "name": name, "archived": False, "revision": 1, "current": False}
    ]


def test_names_are_unique_among_active_programs(
    gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    name = f"Unique {uuid.uuid4().hex[:6]}"
    first = _create(gateway, engineer, new_program(name=name))
    clash = gateway.post("/api/programs", json=new_program(name=name.upper()), headers=engineer)
    assert clash.status_code == 409
    archived = gateway.post(
        f"/api/programs/{first.json()['id']}/archive",
        headers={**engineer, "If-Match": first.headers["etag"]},
    )
    assert archived.status_code == 200
    assert archived.json()["archived"] is True
    second = _create(gateway, engineer, new_program(name=name))
    unarchive = gateway.post(
        f"/api/programs/{first.json()['id']}/unarchive",
        headers={**engineer, "If-Match": archived.headers["etag"]},
    )
    assert unarchive.status_code == 409
    edit_archived = gateway.put(
        f"/api/programs/{first.json()['id']}",
        json=new_program(name="x"),
        headers={**engineer, "If-Match": archived.headers["etag"]},
    )
    assert edit_archived.status_code == 409
    assert second.json()["name"] == name


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (new_program(config=config_v3(width=0)), "body:config.tools.0.roi.width"),
        (
            new_program(
                config={
                    "schema_version": 3,
                    "tools": [
                        {
                            "id": "t",
                            "type": "laser",
                            "roi": {"x": 0, "y": 0, "width": 1, "height": 1},
                        }
                    ],
                }
            ),
            "body:config.tools.0",
        ),
        (
            new_program(config={"schema_version": 3, "tools": [], "colour": "red"}),
            "body:config.colour",
        ),
        (new_program(config={"schema_version": 9, "tools": []}), "body:config.schema_version"),
        (new_program(name="x" * 201), "body:name"),
        (new_program(tags=["a", "a"]), "body:tags"),
        (new_program(surprise=True), "body:surprise"),
        (new_program(master_image_sha256="not-a-hash"), "body:master_image_sha256"),
        ({"name": "No config"}, "body:config"),
    ],
)
def test_bad_input_is_422_with_the_field_and_writes_nothing(
    gateway: httpx.Client,
    engineer: dict[str, str],
    admin_token: str,
    body: dict[str, Any],
    field: str,
) -> None:
    before = gateway.get(
        "/api/audit", params={"action": "programs.create", "limit": 1}, headers=auth(admin_token)
    ).json()
    answer = gateway.post("/api/programs", json=body, headers=engineer)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert any(e["field"].startswith(field) for e in answer.json()["errors"]), answer.json()
    after = gateway.get(
        "/api/audit", params={"action": "programs.create", "limit": 1}, headers=auth(admin_token)
    ).json()
    assert after["items"] == before["items"]


def test_unknown_master_image_is_refused(gateway: httpx.Client, engineer: dict[str, str]) -> None:
    name = f"Ghost {uuid.uuid4().hex[:6]}"
    answer = gateway.post(
        "/api/programs",
        json=new_program(name=name, master_image_sha256=random_sha()),
        headers=engineer,
    )
    assert answer.status_code == 422, answer.text
    listed = gateway.get("/api/programs", params={"q": name}, headers=engineer).json()
    assert listed["items"] == []


def test_other_bad_requests(gateway: httpx.Client, engineer: dict[str, str]) -> None:
    assert gateway.get("/api/programs/not-a-uuid", headers=engineer).status_code == 422
    assert gateway.get(f"/api/programs/{uuid.uuid4()}", headers=engineer).status_code == 404
    assert gateway.get("/api/programs", params={"limit": 1000}, headers=engineer).status_code == 422
    assert (
        gateway.get("/api/programs", params={"sort": "colour"}, headers=engineer).status_code == 422
    )
    bad_cursor = gateway.get("/api/programs", params={"cursor": "garbage!"}, headers=engineer)
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["title"] == "Invalid cursor"
    not_json = gateway.post(
        "/api/programs", content=b"{", headers={**engineer, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 422


def test_viewer_reads_but_cannot_write(gateway: httpx.Client, make_token: TokenMaker) -> None:
    viewer = auth(make_token(Role.VIEWER, "viewer"))
    assert gateway.get("/api/programs", headers=viewer).status_code == 200
    assert gateway.post("/api/programs", json=new_program(), headers=viewer).status_code == 403
    assert gateway.get("/api/audit", headers=viewer).status_code == 403


def test_cursor_pages_are_stable_under_inserts(
    gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    tag = f"page{uuid.uuid4().hex[:6]}"
    names = [f"{tag} {letter}" for letter in "bdfhjln"]
    for name in names:
        _create(gateway, engineer, new_program(name=name, tags=[tag]))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"tag": tag, "limit": 3, "sort": "name"}
        if cursor:
            params["cursor"] = cursor
        page = gateway.get("/api/programs", params=params, headers=engineer).json()
        seen += [item["name"] for item in page["items"]]
        pages += 1
        if pages == 1:
            # Inserted while paging: one before the cursor, one after it.
            _create(gateway, engineer, new_program(name=f"{tag} a", tags=[tag]))
            _create(gateway, engineer, new_program(name=f"{tag} m", tags=[tag]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))
    assert set(names) <= set(seen)
    assert f"{tag} m" in seen
    assert f"{tag} a" not in seen
    descending = gateway.get(
        "/api/programs", params={"tag": tag, "sort": "-name", "limit": 2}, headers=engineer
    ).json()
    assert [i["name"] for i in descending["items"]] == [f"{tag} n", f"{tag} m"]
    searched = gateway.get("/api/programs", params={"q": f"{tag} h"}, headers=engineer).json()
    assert [i["name"] for i in searched["items"]] == [f"{tag} h"]


def test_config_schema_is_published(gateway: httpx.Client, engineer: dict[str, str]) -> None:
    answer = gateway.get("/api/programs/config-schema", headers=engineer).json()
    assert answer["schema_version"] == 3
    assert "tools" in answer["schema"]["properties"]


def test_oversized_config_is_refused(gateway: httpx.Client, engineer: dict[str, str]) -> None:
    config = config_v3()
    config["tools"] = [dict(config["tools"][0], id=f"t{i}") for i in range(65)]
    too_many = gateway.post("/api/programs", json=new_program(config=config), headers=engineer)
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "body:config.tools"
    huge_name = gateway.post(
        "/api/programs", json=new_program(description="x" * 5000), headers=engineer
    )
    assert huge_name.status_code == 422
