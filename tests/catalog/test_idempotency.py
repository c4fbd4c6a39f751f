"""`Idempotency-Key` on writes and `If-None-Match` on JSON reads, through the gateway and on a
catalog killed at the worst moment: a keyed request runs at most once."""

import asyncio
import hashlib
import threading
import uuid
from typing import Any

import httpx
import pytest

from loupe_shared.contracts.streams import IDEMPOTENCY_BUCKET
from loupe_shared.kit.auth import Role
from loupe_shared.kit.idempotency import IN_FLIGHT_TYPE, open_bucket
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings
from tests.catalog.conftest import IsolatedCatalog
from tests.catalog.helpers import named, new_program
from tests.conftest import TokenMaker, auth


@pytest.fixture(scope="module")
def engineer(make_token: TokenMaker) -> dict[str, str]:
    return auth(make_token(Role.ENGINEER, "idempotency-engineer"))


def test_the_same_key_and_body_get_the_first_answer_and_create_once(
    gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    body = new_program()
    key = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    first = gateway.post("/api/programs", json=body, headers={**engineer, **key})
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = gateway.post("/api/programs", json=body, headers={**engineer, **key})
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["location"] == first.headers["location"]
    assert len(named(gateway, engineer, body["name"])) == 1


def test_the_same_key_with_another_body_is_a_422_and_changes_nothing(
    gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    key = {"Idempotency-Key": f"reuse-{uuid.uuid4()}"}
    body = new_program()
    assert gateway.post("/api/programs", json=body, headers={**engineer, **key}).status_code == 201
    other = new_program()
    refused = gateway.post("/api/programs", json=other, headers={**engineer, **key})
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"][0]["field"] == "header:Idempotency-Key"
    assert named(gateway, engineer, other["name"]) == []


def test_a_key_belongs_to_its_caller(
    gateway: httpx.Client, engineer: dict[str, str], make_token: TokenMaker
) -> None:
    other_engineer = auth(make_token(Role.ENGINEER, "idempotency-other"))
    key = {"Idempotency-Key": f"shared-{uuid.uuid4()}"}
    first, second = new_program(), new_program()
    a = gateway.post("/api/programs", json=first, headers={**engineer, **key})
    b = gateway.post("/api/programs", json=second, headers={**other_engineer, **key})
    assert (a.status_code, b.status_code) == (201, 201)
    assert "idempotent-replayed" not in b.headers
    assert a.json()["id"] != b.json()["id"]


@pytest.mark.parametrize("key", [b"", b"x" * 256, "café".encode(), b"tab\tinside"])
def test_a_malformed_key_is_a_422(
    gateway: httpx.Client, engineer: dict[str, str], key: bytes
) -> None:
    body = new_program()
    headers = [(k.encode(), v.encode()) for k, v in engineer.items()]
    answer = gateway.post("/api/programs", json=body, headers=[*headers, (b"Idempotency-Key", key)])
    assert answer.status_code == 422, answer.text
    assert named(gateway, engineer, body["name"]) == []


def test_concurrent_requests_with_one_key_create_once(
    platform: Any, engineer: dict[str, str]
) -> None:
    body = new_program()
    key = {"Idempotency-Key": f"race-{uuid.uuid4()}"}
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(base_url=platform.gateway_url, timeout=30) as client:
            answer = client.post("/api/programs", json=body, headers={**engineer, **key})
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(a.status_code for a in answers)
    assert len(statuses) == 8
    assert set(statuses) <= {201, 409}, statuses
    created = {a.json()["id"] for a in answers if a.status_code == 201}
    assert len(created) == 1
    for answer in answers:
        if answer.status_code == 409:
            assert answer.headers["retry-after"] == "1"
    with httpx.Client(base_url=platform.gateway_url) as client:
        assert len(named(client, engineer, body["name"])) == 1


def test_a_json_read_has_an_etag_and_if_none_match_is_a_304(
    gateway: httpx.Client, engineer: dict[str, str]
) -> None:
    created = gateway.post("/api/programs", json=new_program(), headers=engineer)
    assert created.status_code == 201
    program = f"/api/programs/{created.json()['id']}"
    listing = "/api/programs?limit=5"
    for path in (program, listing):
        answer = gateway.get(path, headers=engineer)
        assert answer.status_code == 200
        etag = answer.headers["etag"]
        unchanged = gateway.get(path, headers={**engineer, "If-None-Match": etag})
        assert unchanged.status_code == 304
        assert unchanged.content == b""
        assert unchanged.headers["etag"] == etag
        other = gateway.get(path, headers={**engineer, "If-None-Match": '"something-else"'})
        assert other.status_code == 200
        assert other.json() == answer.json()
    # The program's own ETag changes with its revision: the old one no longer matches.
    etag = gateway.get(program, headers=engineer).headers["etag"]
    updated = gateway.put(program, json=new_program(), headers={**engineer, "If-Match": etag})
    assert updated.status_code == 200, updated.text
    assert gateway.get(program, headers={**engineer, "If-None-Match": etag}).status_code == 200


def test_a_catalog_killed_before_keeping_the_answer_never_runs_the_request_twice(
    isolated_catalog: IsolatedCatalog, admin_token: str
) -> None:
    """The worst moment: the program is committed, the process dies before the answer is kept.
    The same request sent again (the client never got an answer) must not create it twice."""
    admin = auth(admin_token)
    body = new_program()
    key = {"Idempotency-Key": f"crash-{uuid.uuid4()}"}
    crashing = isolated_catalog.start(CATALOG_IDEMPOTENCY_CRASH_BEFORE_KEEP="true")
    restarted = None
    try:
        with httpx.Client(base_url=isolated_catalog.url, timeout=30) as client:
            with pytest.raises(httpx.TransportError):
                client.post("/api/programs", json=body, headers={**admin, **key})
            assert crashing.popen is not None
            assert crashing.popen.wait(30) == 70
            restarted = isolated_catalog.start()
            for _ in range(3):
                again = client.post("/api/programs", json=body, headers={**admin, **key})
                assert again.status_code == 409, again.text
                assert "still being answered" in again.json()["detail"]
                # the one 409 a client sends again (its outbox tells it by the type)
                assert again.json()["type"] == IN_FLIGHT_TYPE
                assert again.headers["retry-after"] == "1"
            # The work committed once; a new key is a new request (here: the name is taken).
            assert len(named(client, admin, body["name"])) == 1
            fresh = client.post(
                "/api/programs",
                json=body,
                headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
            )
            assert fresh.status_code == 409
            assert fresh.json()["type"] == "about:blank"  # a conflict: not sent again
            assert len(named(client, admin, body["name"])) == 1
    finally:
        crashing.stop()
        if restarted is not None:
            restarted.stop()


@pytest.mark.parametrize(
    "kept",
    [
        b"not json",
        b"[]",
        b'{"state": "answered"}',
        b'{"state": "answered", "fingerprint": "x", "status": 201, "headers": [], "body": "%%%"}',
        b'{"state": "elsewhere"}',
    ],
)
def test_a_kept_answer_edited_by_someone_is_never_run_again_nor_a_500(
    gateway: httpx.Client, engineer: dict[str, str], nats_settings: NatsSettings, kept: bytes
) -> None:
    key = f"edited-{uuid.uuid4()}"
    caller = hashlib.sha256(engineer["Authorization"].encode()).hexdigest()
    name = hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest()

    async def plant() -> None:
        nc = await connect(nats_settings, "tests")
        try:
            kv = await open_bucket(nc.jetstream(), IDEMPOTENCY_BUCKET)
            await kv.put(name, kept)
        finally:
            await nc.close()

    asyncio.run(plant())
    body = new_program()
    answer = gateway.post("/api/programs", json=body, headers={**engineer, "Idempotency-Key": key})
    assert answer.status_code == 409, answer.text
    assert "interrupted" in answer.json()["detail"]
    assert named(gateway, engineer, body["name"]) == []
