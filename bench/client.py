"""`@loupe/client` in Chromium against the stack, beside bare `fetch` in the same page:
what the client adds per request (its cache off, then on), and how long 1,000 writes queued
offline take to replay against the same 1,000 writes sent one by one with bare `fetch`."""

import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page
from tests.client.helpers import PACKAGE, chromium, npm, serve_page

from loupe_stack import console
from loupe_stack.stack import Stack

READS = 400
WRITES = 1000
PROGRAMS = 20

Row = dict[str, Any]


def _built() -> Path:
    console.install(PACKAGE)
    done = npm("run", "build")
    if done.returncode != 0:
        raise RuntimeError(f"npm run build failed:\n{done.stdout[-2000:]}")
    return PACKAGE / "dist" / "browser" / "loupe-client.js"


def program_config() -> dict[str, Any]:
    """A small valid program config (one difference tool) for the programs benchmarks seed."""
    return {
        "schema_version": 3,
        "tools": [
            {
                "id": "tool_0",
                "type": "difference",
                "roi": {"x": 10, "y": 20, "width": 120, "height": 90},
                "threshold": 25,
                "min_defect_area": 30,
            }
        ],
    }


_READS = """async ([ids, token, reads]) => {
    const headers = { Authorization: `Bearer ${token}` };
    const bare = async (id) => {
        const answer = await fetch(`${gatewayUrl}/api/programs/${id}`, { headers });
        await answer.json();
    };
    const through = (client) => async (id) => {
        const { data } = await client.catalog.GET("/api/programs/{program_id}", {
            params: { path: { program_id: id } },
        });
        if (!data) throw new Error("no program");
    };
    const uncached = Loupe.createLoupeClient({
        baseUrl: gatewayUrl, token, cache: false, dbName: "bench-uncached",
    });
    const cached = Loupe.createLoupeClient({ baseUrl: gatewayUrl, token, dbName: "bench-cached" });
    const cases = { bare, uncached: through(uncached), cached: through(cached) };
    const samples = { bare: [], uncached: [], cached: [] };
    for (const read of Object.values(cases)) for (const id of ids) await read(id);  // warm-up
    // Interleaved blocks, so a slower moment of the machine falls on every case alike.
    for (let block = 0; block < reads / 50; block++) {
        for (const [name, read] of Object.entries(cases)) {
            for (let i = 0; i < 50; i++) {
                const started = performance.now();
                await read(ids[i % ids.length]);
                samples[name].push(performance.now() - started);
            }
        }
    }
    return { samples, hitRate: cached.stats().cacheHitRate };
}"""

_BARE_WRITES = """async ([bodies, token]) => {
    const headers = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
    const started = performance.now();
    for (const body of bodies) {
        const answer = await fetch(`${gatewayUrl}/api/programs`, {
            method: "POST", headers, body: JSON.stringify(body),
        });
        if (answer.status !== 201) throw new Error(`answered ${answer.status}`);
    }
    return performance.now() - started;
}"""

_QUEUE = """async ([bodies, token]) => {
    window.loupe = Loupe.createLoupeClient({
        baseUrl: gatewayUrl, token, dbName: "bench-outbox",
        retry: { attempts: 1 }, breaker: { cooldownMs: 500 },
    });
    for (const body of bodies) {
        const saved = await loupe.catalog.POST("/api/programs", { body });
        if (saved.queued !== true) throw new Error("not queued");
    }
    window.drained = new Promise((resolve) => {
        loupe.outbox.subscribe((e) => { if (e.count === 0) resolve(performance.now()); });
    });
    window.onlineAt = null;
    addEventListener("online", () => { onlineAt = performance.now(); });
    return await loupe.outbox.count();
}"""


def _bodies(prefix: str) -> list[dict[str, Any]]:
    return [
        {"name": f"{prefix}-{i}", "tags": ["bench"], "config": program_config()}
        for i in range(WRITES)
    ]


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _reads(page: Page, ids: list[str], token: str) -> list[Row]:
    found = page.evaluate(_READS, [ids, token, READS])
    bare = found["samples"]["bare"]
    rows: list[Row] = []
    for name, label in (
        ("bare", "program GET, bare fetch (baseline)"),
        ("uncached", "program GET through @loupe/client, cache off"),
        ("cached", "program GET through @loupe/client, cache on (TTL 5 min)"),
    ):
        samples = found["samples"][name]
        row: Row = {
            "bench": "client",
            "case": label,
            "requests": len(samples),
            "mean_ms": round(statistics.fmean(samples), 3),
            "p50_ms": round(statistics.median(samples), 3),
            "p95_ms": round(_percentile(samples, 0.95), 3),
        }
        if name != "bare":
            row["overhead_ms_mean"] = round(statistics.fmean(samples) - statistics.fmean(bare), 3)
            row["ratio_mean"] = round(statistics.fmean(samples) / statistics.fmean(bare), 2)
        if name == "cached":
            row["cache_hit_rate"] = round(found["hitRate"], 3)
        rows.append(row)
    return rows


def _writes(page: Page, token: str) -> list[Row]:
    tag = uuid.uuid4().hex[:8]
    bare_ms = page.evaluate(_BARE_WRITES, [_bodies(f"bench-bare-{tag}"), token])
    page.context.set_offline(True)
    queued = page.evaluate(_QUEUE, [_bodies(f"bench-queued-{tag}"), token])
    assert queued == WRITES, queued
    page.context.set_offline(False)
    page.evaluate("loupe.outbox.replay()")
    replay_ms = page.evaluate("drained.then((at) => at - (onlineAt ?? at))")
    return [
        {
            "bench": "client",
            "case": f"{WRITES} program creates, bare fetch one by one (baseline)",
            "seconds": round(bare_ms / 1000, 2),
            "writes_per_s": round(WRITES / (bare_ms / 1000), 1),
        },
        {
            "bench": "client",
            "case": f"{WRITES} program creates queued offline, replayed by the outbox",
            "seconds": round(replay_ms / 1000, 2),
            "writes_per_s": round(WRITES / (replay_ms / 1000), 1),
            "throughput_vs_baseline": round(bare_ms / replay_ms, 2),
        },
    ]


def bench_client(stack: Stack, frontend_port: int) -> list[Row]:
    bundle = _built()
    size = npm("run", "size")
    token = stack.admin_token
    with httpx.Client(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {token}"}
    ) as c:
        ids = []
        for i in range(PROGRAMS):
            body = {"name": f"bench-client-{uuid.uuid4().hex[:8]}-{i}", "config": program_config()}
            created = c.post("/api/programs", json=body)
            created.raise_for_status()
            ids.append(created.json()["id"])
    rows: list[Row] = []
    with serve_page(bundle, frontend_port) as origin, chromium() as browser:
        page = browser.new_page()
        page.goto(f"{origin}/index.html?gateway={stack.gateway_url}")
        page.wait_for_function("window.Loupe !== undefined")
        started = time.perf_counter()
        rows += _reads(page, ids, token)
        rows += _writes(page, token)
        rows.append(
            {
                "bench": "client",
                "case": "browser bundle size",
                "size": " ".join(size.stdout.split()[-6:]),
                "seconds_in_browser": round(time.perf_counter() - started, 1),
            }
        )
    return rows
