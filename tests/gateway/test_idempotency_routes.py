"""`Idempotency-Key` on every POST that creates or starts something, service by service,
through the gateway: the same key and body replay the first answer (and start nothing new),
the same key with another body is a 422 that changes nothing, and the keys are kept for at
least 24 hours in the bucket every replica shares. Programs have their own, deeper tests
(tests/catalog/test_idempotency.py, a catalog killed mid-request); a second process of the
same service answering the replay: tests/cluster/test_idempotency_replicas.py."""

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from loupe_shared.contracts.streams import IDEMPOTENCY_BUCKET
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit.auth import Role
from loupe_shared.kit.idempotency import KEY_TTL_S
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings
from tests.catalog.helpers import named
from tests.conftest import TokenMaker, auth
from tests.legacy.helpers import legacy_program


@pytest.fixture(scope="module")
def admin(make_token: TokenMaker) -> dict[str, str]:
    return auth(make_token(Role.ADMIN, "idempotency-routes"))


@dataclass(frozen=True)
class Write:
    """A creating POST: its path and query, a body maker, and how to count what it made."""

    path: str
    params: dict[str, str]
    body: Callable[[], dict[str, Any] | list[Any]]
    # How many of what it made exist (None: nothing to count; the replayed answer is the check).
    made: Callable[[httpx.Client, dict[str, str], dict[str, Any]], int] | None
    status: int


def _backups_with_id(client: httpx.Client, headers: dict[str, str], sent: dict[str, Any]) -> int:
    listed = client.get("/api/backups", headers=headers)
    assert listed.status_code == 200, listed.text
    return sum(1 for item in listed.json()["items"] if item["id"] == sent["answer"]["id"])


def _programs_named(client: httpx.Client, headers: dict[str, str], sent: dict[str, Any]) -> int:
    return len(named(client, headers, sent["body"][0]["name"]))


def _inspection() -> dict[str, Any]:
    return {
        "program_id": str(uuid.uuid4()),
        "capture_sha256": hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
        "line_id": "idempotency",
    }


WRITES = {
    "backup": Write("/api/backups", {}, lambda: {"kind": "full"}, _backups_with_id, 202),
    "legacy migration": Write(
        "/api/migrations/legacy",
        {"dry_run": "false"},
        lambda: [legacy_program()],
        _programs_named,
        201,
    ),
    "inspection": Write("/api/inspections", {}, _inspection, None, 202),
    "retention run": Write("/api/retention/runs", {"dry_run": "true"}, dict, None, 200),
}


def _wait_backups_done(client: httpx.Client, headers: dict[str, str]) -> None:
    """The backup a test started has ended (the session's platform is shared)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        items = client.get("/api/backups", headers=headers).json()["items"]
        if all(item["status"] != "running" for item in items):
            return
        time.sleep(0.2)
    raise AssertionError("a backup is still running after 120 s")


@pytest.mark.parametrize("what", list(WRITES))
def test_the_same_key_and_body_replay_the_first_answer_and_start_nothing_new(
    gateway: httpx.Client, admin: dict[str, str], what: str
) -> None:
    write = WRITES[what]
    body = write.body()
    headers = {**admin, "Idempotency-Key": f"{what}-{uuid.uuid4()}"}
    try:
        first = gateway.post(write.path, params=write.params, json=body, headers=headers)
        assert first.status_code == write.status, first.text
        assert "idempotent-replayed" not in first.headers
        again = gateway.post(write.path, params=write.params, json=body, headers=headers)
        assert again.status_code == write.status, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        if write.made is not None:
            assert write.made(gateway, admin, {"body": body, "answer": first.json()}) == 1
    finally:
        if what == "backup":
            _wait_backups_done(gateway, admin)


@pytest.mark.parametrize("what", ["legacy migration", "inspection"])
def test_the_same_key_with_another_body_is_a_422_and_changes_nothing(
    gateway: httpx.Client, admin: dict[str, str], what: str
) -> None:
    write = WRITES[what]
    headers = {**admin, "Idempotency-Key": f"{what}-reused-{uuid.uuid4()}"}
    first = gateway.post(write.path, params=write.params, json=write.body(), headers=headers)
    assert first.status_code == write.status, first.text
    other = write.body()
    refused = gateway.post(write.path, params=write.params, json=other, headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"][0]["field"] == "header:Idempotency-Key"
    if write.made is not None:
        assert write.made(gateway, admin, {"body": other, "answer": {}}) == 0


def test_a_dry_run_restore_is_replayed_by_its_key(
    gateway: httpx.Client, admin: dict[str, str]
) -> None:
    """A restore is keyed like any start (a real one would replace the shared platform's
    data, so the replay is shown on its dry run, which passes the same middleware)."""
    started = gateway.post(
        "/api/backups",
        json={"kind": "full"},
        headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert started.status_code == 202, started.text
    _wait_backups_done(gateway, admin)
    path = f"/api/backups/{started.json()['id']}/restore"
    headers = {**admin, "Idempotency-Key": f"restore-{uuid.uuid4()}"}
    first = gateway.post(path, json={"dry_run": True}, headers=headers)
    assert first.status_code == 200, first.text
    again = gateway.post(path, json={"dry_run": True}, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


def test_keys_are_kept_24_hours_in_the_bucket_every_replica_reads(
    nats_settings: NatsSettings,
) -> None:
    async def max_age() -> float:
        nc = await connect(nats_settings, "loupe-tests")
        try:
            bucket = stream_name(IDEMPOTENCY_BUCKET, nats_settings.namespace)
            info = await nc.jetstream().stream_info(f"KV_{bucket}")
            return float(info.config.max_age or 0)
        finally:
            await nc.drain()

    kept = asyncio.run(max_age())
    assert KEY_TTL_S >= 24 * 3600
    assert kept >= 24 * 3600, f"the idempotency bucket keeps keys {kept} s"
