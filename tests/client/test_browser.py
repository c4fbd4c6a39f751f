"""`@loupe/client` in Debian's Chromium against the real stack, from a page on another origin
(as the frontend runs): writes made offline are replayed once each, the live feed keeps every
result across a catalog restart, the browser's localStorage is migrated, and a scripted browse
session is mostly answered from the cache."""

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page

from loupe_shared.contracts import subjects
from loupe_shared.kit.auth import Role
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.stack import Stack
from tests.catalog.helpers import config_v3, named, publish
from tests.conftest import TokenMaker, auth
from tests.results.helpers import result
from tests.support import eventually, off_loop

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy-localstorage.json"


@pytest.fixture(scope="module")
def engineer_token(make_token: TokenMaker) -> str:
    return off_loop(make_token, Role.ENGINEER, "browser-engineer")


def _client(page: Page, token: str, **options: Any) -> None:
    """`window.loupe`: a client of the gateway with the test's token and options."""
    page.evaluate(
        """([token, options]) => {
            window.loupe = Loupe.createLoupeClient({
                baseUrl: window.gatewayUrl, token, dbName: `loupe-${Math.random()}`, ...options,
            });
            window.loupe.outbox.subscribe((e) => show("outbox", e.count));
        }""",
        [token, options],
    )


def _program(name: str, description: str = "") -> dict[str, Any]:
    return {"name": name, "description": description, "tags": ["browser"], "config": config_v3()}


def _revisions(gateway: httpx.Client, headers: dict[str, str], program_id: str) -> list[int]:
    answer = gateway.get(f"/api/programs/{program_id}/revisions?limit=50", headers=headers)
    assert answer.status_code == 200, answer.text
    return [item["revision"] for item in answer.json()["items"]]


def test_writes_made_offline_are_replayed_in_order_each_exactly_once(
    page: Page, context: BrowserContext, gateway: httpx.Client, engineer_token: str
) -> None:
    headers = auth(engineer_token)
    tag = uuid.uuid4().hex[:8]
    ids = []
    for i in range(5):
        created = gateway.post("/api/programs", json=_program(f"edited-{tag}-{i}"), headers=headers)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    _client(page, engineer_token, retry={"attempts": 2, "baseMs": 50, "capMs": 200})
    page.evaluate(
        """async (ids) => {
            window.etags = {};
            for (const id of ids) {
                const { response } = await loupe.catalog.GET("/api/programs/{program_id}", {
                    params: { path: { program_id: id } },
                });
                etags[id] = response.headers.get("ETag");
            }
        }""",
        ids,
    )
    context.set_offline(True)
    edits = {
        program_id: [_program(f"edited-{tag}-{i}", f"edit {n}") for n in range(4)]
        for i, program_id in enumerate(ids)
    }
    creates = [_program(f"created-{tag}-{i}") for i in range(5)]
    queued = page.evaluate(
        """async ([edits, creates]) => {
            const outcomes = [];
            for (let n = 0; n < 4; n++) {
                for (const [id, bodies] of Object.entries(edits)) {
                    const saved = await loupe.catalog.PUT("/api/programs/{program_id}", {
                        params: { path: { program_id: id }, header: { "if-match": etags[id] } },
                        body: bodies[n],
                    });
                    outcomes.push(saved.queued === true);
                }
            }
            for (const body of creates) {
                const saved = await loupe.catalog.POST("/api/programs", { body });
                outcomes.push(saved.queued === true);
            }
            log(`queued ${outcomes.filter(Boolean).length} writes while offline`);
            return { outcomes, count: await loupe.outbox.count() };
        }""",
        [edits, creates],
    )
    assert queued["outcomes"] == [True] * 25
    assert queued["count"] == 25
    # Nothing reached the server while the page was offline.
    assert all(_revisions(gateway, headers, program_id) == [1] for program_id in ids)
    context.set_offline(False)
    eventually("the outbox replayed", lambda: page.evaluate("loupe.outbox.count()") == 0, 60)
    left = page.evaluate("loupe.outbox.list()")
    assert left == []
    for program_id in ids:
        assert _revisions(gateway, headers, program_id) == [5, 4, 3, 2, 1]
        current = gateway.get(f"/api/programs/{program_id}", headers=headers).json()
        assert current["description"] == "edit 3"
    for body in creates:
        assert len(named(gateway, headers, body["name"])) == 1
    page.evaluate("log('replayed: the outbox is empty')")


def test_reads_made_offline_answer_the_last_answer_kept_marked_stale(
    page: Page, context: BrowserContext, gateway: httpx.Client, engineer_token: str
) -> None:
    headers = auth(engineer_token)
    body = _program(f"stale-{uuid.uuid4().hex[:8]}")
    created = gateway.post("/api/programs", json=body, headers=headers)
    assert created.status_code == 201, created.text
    program_id = created.json()["id"]
    # TTL 0: every read goes to Loupe (the cache only revalidates), so offline is seen at once.
    _client(page, engineer_token, retry={"attempts": 1}, cache={"ttl": {"/api/programs": 0}})
    read = """async (id) => {
        try {
            const { data, response } = await loupe.catalog.GET("/api/programs/{program_id}", {
                params: { path: { program_id: id } },
            });
            return {
                name: data.name,
                cache: response.headers.get("X-Loupe-Cache"),
                stale: response.headers.get("X-Loupe-Stale"),
            };
        } catch (error) {
            return { failed: error.status };
        }
    }"""
    online = page.evaluate(read, program_id)
    assert online == {"name": body["name"], "cache": None, "stale": None}
    context.set_offline(True)
    offline = page.evaluate(read, program_id)
    assert offline == {"name": body["name"], "cache": "stale", "stale": "1"}
    never_read = page.evaluate(read, str(uuid.uuid4()))
    assert never_read == {"failed": 0}  # nothing kept to fall back on: the network's problem
    assert page.evaluate("loupe.stats().staleServed") == 1
    context.set_offline(False)
    again = page.evaluate(read, program_id)
    assert again["stale"] is None


def test_a_change_made_elsewhere_meanwhile_is_a_conflict_not_an_overwrite(
    page: Page, context: BrowserContext, gateway: httpx.Client, engineer_token: str
) -> None:
    headers = auth(engineer_token)
    name = f"contested-{uuid.uuid4().hex[:8]}"
    created = gateway.post("/api/programs", json=_program(name), headers=headers)
    program_id = created.json()["id"]
    _client(page, engineer_token, retry={"attempts": 2, "baseMs": 50, "capMs": 200})
    context.set_offline(True)
    queued = page.evaluate(
        """async ([id, etag, body]) => {
            const saved = await loupe.catalog.PUT("/api/programs/{program_id}", {
                params: { path: { program_id: id }, header: { "if-match": etag } }, body,
            });
            return saved.queued === true;
        }""",
        [program_id, created.headers["etag"], _program(name, "mine, offline")],
    )
    assert queued
    theirs = gateway.put(
        f"/api/programs/{program_id}",
        json=_program(name, "theirs, online"),
        headers={**headers, "If-Match": created.headers["etag"]},
    )
    assert theirs.status_code == 200
    context.set_offline(False)
    eventually(
        "the replay met the conflict",
        lambda: [i["state"] for i in page.evaluate("loupe.outbox.list()")] == ["conflict"],
        60,
    )
    item = page.evaluate("loupe.outbox.list().then((items) => items[0])")
    assert item["problem"]["status"] == 412
    current = gateway.get(f"/api/programs/{program_id}", headers=headers).json()
    assert current["description"] == "theirs, online"
    assert _revisions(gateway, headers, program_id) == [2, 1]


def test_the_live_feed_keeps_every_result_across_a_catalog_restart(
    page: Page,
    platform: Stack,
    gateway: httpx.Client,
    nats_settings: NatsSettings,
    make_token: TokenMaker,
) -> None:
    line_id = f"browser-{uuid.uuid4().hex[:8]}"
    line = auth(off_loop(make_token, Role.LINE, "browser-line"))
    _client(page, off_loop(make_token, Role.VIEWER, "browser-viewer"))
    page.evaluate(
        """(line) => {
            window.received = [];
            window.liveStatus = "";
            window.unsubscribe = loupe.subscribeResults({ line_id: line }, (r) => {
                received.push(r.result_id);
                show("results", received.length);
            }, {
                onStatus: (s) => { liveStatus = s; log(`live: ${s}`); },
                backoffBaseMs: 200, backoffCapMs: 1000,
            });
        }""",
        line_id,
    )
    page.wait_for_function("liveStatus === 'live'", timeout=30_000)
    before = [result(line_id) for _ in range(20)]
    assert gateway.post("/api/results", json={"results": before}, headers=line).status_code == 202
    page.wait_for_function("received.length >= 20", timeout=30_000)
    # While the catalog restarts, the line goes on publishing to the stream; the feed is cut.
    during = [result(line_id) for _ in range(20)]
    platform.restart_service("catalog")
    for chunk in (during[:10], during[10:]):
        body = json.dumps({"results": chunk}).encode()
        off_loop(publish, nats_settings, subjects.RESULTS_RECORDED, body)
    after = [result(line_id) for _ in range(20)]
    eventually(
        "the catalog answers again",
        lambda: (
            gateway.get("/api/results", params={"limit": 1}, headers=line).status_code in (200, 403)
        ),
        timeout_s=60,
    )
    assert gateway.post("/api/results", json={"results": after}, headers=line).status_code == 202
    page.wait_for_function("received.length >= 60", timeout=60_000, polling=200)
    received = page.evaluate("received")
    sent = [r["result_id"] for r in before + during + after]
    assert len(received) == 60, "a result was delivered twice"
    assert set(received) == set(sent)
    page.evaluate("unsubscribe()")


def test_the_browsers_local_storage_is_migrated_once_and_rolled_back(
    page: Page, gateway: httpx.Client, admin_token: str
) -> None:
    legacy = json.loads(FIXTURE.read_text())
    # Each run of the suite imports the fixture afresh: its programs get ids of this test's own.
    tag = uuid.uuid4().hex[:8]
    for program in legacy:
        program["id"] = f"{program['id']}-{tag}"
        program["name"] = f"{program['name']} {tag}"
    page.evaluate(
        "(legacy) => localStorage.setItem('vision_programs', JSON.stringify(legacy))", legacy
    )
    _client(page, admin_token)
    dry = page.evaluate("loupe.migrateFromLocalStorage({ dryRun: true })")
    assert dry["status"] == "dry_run"
    assert page.evaluate("localStorage.getItem('vision_programs') !== null")
    assert page.evaluate("localStorage.getItem('vision_programs_backup')") is None
    outcomes = sorted(item["outcome"] for item in dry["report"]["items"])
    assert len(outcomes) == len(legacy)

    applied = page.evaluate("loupe.migrateFromLocalStorage({ dryRun: false })")
    assert applied["status"] == "applied"
    assert applied["verified"] is True
    imported = [i for i in applied["report"]["items"] if i["outcome"] in ("imported", "revised")]
    assert imported, applied["report"]
    assert applied["removedLegacyKey"] is True
    keys = page.evaluate(
        """() => ({
            legacy: localStorage.getItem('vision_programs'),
            backup: localStorage.getItem('vision_programs_backup'),
            completed: localStorage.getItem('migration_completed'),
        })"""
    )
    assert keys["legacy"] is None
    assert json.loads(keys["backup"]) == legacy
    assert keys["completed"]
    headers = auth(admin_token)
    for item in imported:
        answer = gateway.get(f"/api/programs/{item['program_id']}", headers=headers)
        assert answer.status_code == 200

    again = page.evaluate("loupe.migrateFromLocalStorage({ dryRun: false })")
    assert again["status"] == "nothing_to_migrate"
    runs = gateway.get("/api/migrations", params={"limit": 200}, headers=headers).json()["items"]
    assert sum(1 for run in runs if run["id"] == applied["runId"]) == 1

    rolled = page.evaluate("(runId) => loupe.rollbackMigration(runId)", applied["runId"])
    assert rolled["restoredLegacyKey"] is True
    assert json.loads(page.evaluate("localStorage.getItem('vision_programs')")) == legacy
    assert page.evaluate("localStorage.getItem('migration_completed')") is None
    for item in imported:
        program = gateway.get(f"/api/programs/{item['program_id']}", headers=headers).json()
        assert program["archived"] is True


def test_a_scripted_browse_session_is_mostly_answered_from_the_cache(
    page: Page, gateway: httpx.Client, engineer_token: str
) -> None:
    """An engineer looks through a line's programs and results, back and forth, as the
    frontend does: the client's cache answers most of it (TTL hits and 304 revalidations)."""
    headers = auth(engineer_token)
    tag = uuid.uuid4().hex[:8]
    ids = [
        gateway.post("/api/programs", json=_program(f"browse-{tag}-{i}"), headers=headers).json()[
            "id"
        ]
        for i in range(5)
    ]
    _client(page, engineer_token)
    stats = page.evaluate(
        """async ([ids, tag]) => {
            loupe.resetStats();
            for (let round = 0; round < 10; round++) {
                const q = `browse-${tag}`;
                await loupe.catalog.GET("/api/programs", { params: { query: { q } } });
                for (const id of ids) {
                    await loupe.catalog.GET("/api/programs/{program_id}", {
                        params: { path: { program_id: id } },
                    });
                }
                await loupe.catalog.GET("/api/results", { params: { query: { limit: 20 } } });
            }
            const s = loupe.stats();
            log(`cache hit rate ${(100 * s.cacheHitRate).toFixed(1)} %, ${s.cacheLookups} reads`);
            return s;
        }""",
        [ids, tag],
    )
    print(
        f"\nscripted browse session: {stats['cacheLookups']} reads, cache hit rate "
        f"{stats['cacheHitRate']:.1%} (TTL {stats['ttlHits']}, 304 {stats['notModified']})"
    )
    assert stats["cacheLookups"] == 70
    assert stats["cacheHitRate"] > 0.8
