"""Events leave through the outbox exactly once, even when the relay dies between publishing
and marking; image events become records idempotently; malformed ones are dead-lettered."""

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import ImageStored, Thumbnail
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.stack import Stack
from tests.catalog.conftest import IsolatedCatalog
from tests.catalog.helpers import new_program, publish, random_sha, stored_image
from tests.conftest import auth
from tests.databases import sql
from tests.support import eventually


def _messages(
    settings: NatsSettings, stream: str, subject: str
) -> list[tuple[dict[str, Any], dict[str, str]]]:
    async def read() -> list[tuple[dict[str, Any], dict[str, str]]]:
        nc = await connect(settings, "tests")
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            sub = await js.pull_subscribe(
                subject, stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
            )
            out = []
            if info.state.messages:
                try:
                    while True:
                        batch = await sub.fetch(500, timeout=1)
                        out += [(json.loads(m.data), dict(m.headers or {})) for m in batch]
                except Exception:  # noqa: S110 - no more messages
                    pass
            await sub.unsubscribe()
            return out
        finally:
            await nc.drain()

    return asyncio.run(read())


def test_program_events_reach_nats_with_their_id(
    platform: Stack, gateway: httpx.Client, admin_token: str, nats_settings: NatsSettings
) -> None:
    created = gateway.post("/api/programs", json=new_program(), headers=auth(admin_token))
    program_id = created.json()["id"]

    def revised() -> list[tuple[dict[str, Any], dict[str, str]]]:
        return [
            (body, headers)
            for body, headers in _messages(nats_settings, "PROGRAMS", subjects.PROGRAMS_REVISED)
            if body["program_id"] == program_id
        ]

    eventually("programs.revised published", lambda: len(revised()) == 1, timeout_s=10)
    ((body, headers),) = revised()
    assert body["revision"] == 1
    assert headers["Nats-Msg-Id"] == body["event_id"]
    assert body["request_id"] == created.headers["x-request-id"]


def test_image_events_are_recorded_once(
    gateway: httpx.Client, admin_token: str, nats_settings: NatsSettings
) -> None:
    sha = random_sha()
    event = ImageStored(
        sha256=sha, size=10, width=2, height=3, content_type="image/jpeg", kind="capture"
    )
    stored_image(nats_settings, gateway, admin_token, sha)  # first sighting (kind master)
    record = gateway.get(f"/api/image-records/{sha}", headers=auth(admin_token)).json()
    publish(
        nats_settings, subjects.IMAGES_STORED, event.model_dump_json().encode()
    )  # again, different
    # The consumer works in order: once a sentinel published after the repeat is recorded,
    # the repeat has been handled.
    stored_image(nats_settings, gateway, admin_token)
    assert gateway.get(f"/api/image-records/{sha}", headers=auth(admin_token)).json() == record
    assert record["kind"] == "master"
    assert record["source"] == "event"


def test_the_announcement_of_more_thumbnails_wins_whatever_the_order(
    gateway: httpx.Client, admin_token: str, nats_settings: NatsSettings
) -> None:
    """A large upload is announced with its small thumbnail, then again with both: the
    first announcement redelivered after the second keeps both on the record."""
    sha = random_sha()
    small = Thumbnail(size=256, key=f"thumbs/{sha}/256.webp", width=256, height=192, bytes=900)
    large = Thumbnail(size=1024, key=f"thumbs/{sha}/1024.webp", width=1024, height=768, bytes=9000)

    def announce(thumbnails: list[Thumbnail]) -> None:
        event = ImageStored(
            sha256=sha,
            size=10,
            width=4000,
            height=3000,
            content_type="image/jpeg",
            kind="capture",
            thumbnails=thumbnails,
        )
        publish(nats_settings, subjects.IMAGES_STORED, event.model_dump_json().encode())

    announce([small, large])
    announce([small])
    stored_image(nats_settings, gateway, admin_token)  # handled in order: a sentinel
    record = gateway.get(f"/api/image-records/{sha}", headers=auth(admin_token)).json()
    assert [t["size"] for t in record["thumbnails"]] == [256, 1024]


def test_malformed_image_event_is_dead_lettered(
    gateway: httpx.Client, admin_token: str, nats_settings: NatsSettings
) -> None:
    marker = uuid.uuid4().hex
    publish(nats_settings, subjects.IMAGES_STORED, json.dumps({"sha256": marker}).encode())

    def dead() -> bool:
        return any(
            body.get("sha256") == marker
            for body, _ in _messages(nats_settings, "DEADLETTER", f"{subjects.DEADLETTER}.images")
        )

    eventually("malformed event dead-lettered", dead, timeout_s=10)
    # The consumer keeps going after it.
    stored_image(nats_settings, gateway, admin_token)


@pytest.mark.slow
def test_relay_killed_between_publish_and_mark_loses_nothing_and_duplicates_nothing(
    platform: Stack,
    isolated_catalog: IsolatedCatalog,
    scratch_database: str,
    admin_token: str,
    nats_settings: NatsSettings,
) -> None:
    namespace = isolated_catalog.env["CATALOG_NAMESPACE"]
    url = isolated_catalog.url
    doomed = isolated_catalog.start(CATALOG_OUTBOX_CRASH_AFTER_PUBLISH="true")
    created = httpx.post(
        f"{url}/api/programs", json=new_program(), headers=auth(admin_token), timeout=15
    )
    assert created.status_code == 201
    program_id = created.json()["id"]
    assert doomed.popen is not None
    assert doomed.popen.wait(timeout=30) == 70  # died right after publishing, before marking

    stream = subjects.stream_name("PROGRAMS", namespace)
    topic = subjects.subject(subjects.PROGRAMS_REVISED, namespace)
    pending_sql = "SELECT event_id FROM outbox WHERE published_at IS NULL"
    pending = sql(platform, scratch_database, pending_sql)
    assert len(pending) == 1  # the mark never happened
    assert [b["program_id"] for b, _ in _messages(nats_settings, stream, topic)] == [program_id]

    survivor = isolated_catalog.start()
    try:
        eventually("outbox drained", lambda: not sql(platform, scratch_database, pending_sql))
        messages = _messages(nats_settings, stream, topic)
        assert [b["program_id"] for b, _ in messages] == [program_id]  # republished, deduplicated
        assert messages[0][1]["Nats-Msg-Id"] == pending[0]["event_id"]
    finally:
        survivor.stop()


def test_audit_log_is_append_only(platform: Stack, gateway: httpx.Client, admin_token: str) -> None:
    gateway.post("/api/programs", json=new_program(), headers=auth(admin_token)).raise_for_status()
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        sql(platform, "loupe", "UPDATE audit_log SET actor = 'someone else'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        sql(platform, "loupe", "DELETE FROM audit_log")
    entry = gateway.get(
        "/api/audit", params={"action": "programs.create", "limit": 1}, headers=auth(admin_token)
    ).json()["items"][0]
    assert entry["actor"] == "local-admin"
    assert entry["role"] == "admin"
    assert entry["request_id"]
    assert entry["before_checksum"] is None
    assert len(entry["after_checksum"]) == 64


def test_actions_audited_by_other_services_land_once(
    gateway: httpx.Client, admin_token: str, nats_settings: NatsSettings
) -> None:
    from loupe_shared.contracts.events import AuditRecorded

    target = f"image:{random_sha()}"
    event = AuditRecorded(
        actor="line-7",
        actor_token_id="0123456789abcdef",
        role="line",
        action="images.download",
        target=target,
        request_id="dl-1",
        details={"bytes": 1234},
    )
    body = event.model_dump_json().encode()
    publish(nats_settings, subjects.AUDIT_RECORDED, body, {"Nats-Msg-Id": event.event_id})
    publish(
        nats_settings, subjects.AUDIT_RECORDED, body, {"Nats-Msg-Id": "resent-" + event.event_id}
    )

    def entries() -> list[dict[str, Any]]:
        page = gateway.get(
            "/api/audit", params={"target": target}, headers=auth(admin_token)
        ).json()
        return list(page["items"])

    eventually("audit entry appended", lambda: len(entries()) == 1, timeout_s=10)
    marker = random_sha()
    publish(
        nats_settings,
        subjects.AUDIT_RECORDED,
        AuditRecorded(
            actor="x",
            actor_token_id=None,
            role="line",
            action="images.download",
            target=f"image:{marker}",
        )
        .model_dump_json()
        .encode(),
    )
    eventually(
        "later event appended",
        lambda: (
            gateway.get(
                "/api/audit", params={"target": f"image:{marker}"}, headers=auth(admin_token)
            ).json()["items"]
            != []
        ),
    )
    (entry,) = entries()  # the resent copy was not appended
    assert entry["action"] == "images.download"
    assert entry["request_id"] == "dl-1"
    assert entry["details"] == {"bytes": 1234}
