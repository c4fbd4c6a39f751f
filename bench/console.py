"""The console in Chromium against the stack, same-origin through the gateway at /console/:
the Programs page with 10,000 programs (first contentful paint, long tasks over 50 ms while it
loads and pages on), the Lines page while 2,000 results/s are published for 10 s (DOM nodes
before and after, results the page counted against results published), and the bundle's
gzip size."""

import asyncio
import gzip
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page
from tests.client.helpers import chromium

from bench.client import program_config
from bench.results import _line
from loupe_line.client import LineClient
from loupe_line.simulate import ResultSimulator, SimulationPlan
from loupe_stack import console
from loupe_stack.config import CONSOLE_DIST
from loupe_stack.stack import Stack

PROGRAMS = 10_000
SEED_THREADS = 16
PAGES = 5
RATE = 2_000
SECONDS = 10.0

Row = dict[str, Any]

# Runs before the app: every paint and every long task of the page's life, buffered.
_OBSERVE = """
window.__perf = { paints: {}, long: [] };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__perf.paints[e.name] = e.startTime;
}).observe({ type: "paint", buffered: true });
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__perf.long.push([e.startTime, e.duration]);
}).observe({ type: "longtask", buffered: true });
"""


def _seed(stack: Stack, count: int) -> float:
    """`count` programs through the gateway, in parallel; seconds taken."""
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    config = program_config()
    local = threading.local()

    def one(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(
                base_url=stack.gateway_url, headers=headers, timeout=60
            )
        answer = client.post(
            "/api/programs",
            json={
                "name": f"Part {i:05d}",
                "description": f"bench program {i}",
                "tags": [f"line-{i % 20}", "bench"],
                "config": config,
            },
        )
        answer.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - started


def _publish(stack: Stack, work: Path, line_id: str, out: dict[str, Any]) -> None:
    """2,000 results/s for 10 s from one line client (on its own thread and loop); `out`
    holds how many were submitted so far."""

    async def run() -> None:
        simulator = ResultSimulator(SimulationPlan(line_id=line_id, seed=5))
        total = int(RATE * SECONDS)
        async with LineClient(_line(stack, work, "", line_id)) as line:
            started = time.perf_counter()
            for i in range(total):
                due = started + i / RATE
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await line.submit(simulator.next())
                out["submitted"] = i + 1
            await line.flush()
            out["seconds"] = time.perf_counter() - started
            out["published"] = total

    asyncio.run(run())


def _long_tasks(page: Page, since: float = 0.0) -> list[tuple[float, float]]:
    tasks = page.evaluate("window.__perf.long")
    return [(float(s), float(d)) for s, d in tasks if float(s) >= since]


def _summary(tasks: list[tuple[float, float]]) -> dict[str, Any]:
    durations = [d for _, d in tasks]
    return {
        "long_tasks": len(durations),
        "long_task_max_ms": round(max(durations), 1) if durations else 0,
        "long_task_total_ms": round(sum(durations), 1),
    }


def _bundle() -> Row:
    dist = CONSOLE_DIST / "assets"
    sizes = {"js": 0, "js_gzip": 0, "css": 0, "css_gzip": 0}
    for file in dist.iterdir():
        kind = file.suffix.lstrip(".")
        if kind not in ("js", "css"):
            continue
        data = file.read_bytes()
        sizes[kind] += len(data)
        sizes[f"{kind}_gzip"] += len(gzip.compress(data, 9))
    return {
        "bench": "console",
        "case": "bundle (vite build)",
        **{f"{k}_kb": round(v / 1024, 1) for k, v in sizes.items()},
    }


def _lines(page: Page, stack: Stack, work: Path) -> Row:
    """The Lines page while 2,000 results/s are published for 10 s from a line of its own:
    the line's tile count against what was published, the backlog (submitted so far minus
    counted, sampled every 250 ms), DOM nodes, long tasks, and what the server skipped for a
    slow reader and the page filled from the list."""
    page.goto(f"{stack.console_url}#/lines")
    page.get_by_text("live", exact=True).wait_for(timeout=30_000)
    line_id = f"bench-console-{uuid.uuid4().hex[:6]}"
    total = page.get_by_role("article", name=f"Line {line_id}").get_by_test_id("total")

    def nodes() -> int:
        return int(page.evaluate("document.getElementsByTagName('*').length"))

    def counted() -> int:
        return int(str(total.text_content())) if total.count() else 0

    before_nodes = nodes()
    mark = float(page.evaluate("performance.now()"))
    out: dict[str, Any] = {"submitted": 0}
    publisher = threading.Thread(target=_publish, args=(stack, work, line_id, out))
    publisher.start()
    peak_nodes, backlog = before_nodes, 0
    while publisher.is_alive():
        submitted = int(out["submitted"])
        backlog = max(backlog, submitted - counted())
        peak_nodes = max(peak_nodes, nodes())
        page.wait_for_timeout(250)
    publisher.join()
    published = int(out["published"])
    end_published = time.perf_counter()
    at_end = counted()
    # Then how long until the page has counted every one (no growing backlog).
    caught_up_s: float | None = None
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        if counted() >= published:
            caught_up_s = time.perf_counter() - end_published
            break
        page.wait_for_timeout(100)
    skipped = page.get_by_text("skipped by the server")
    return {
        "bench": "console",
        "case": f"Lines page, {RATE} results/s for {SECONDS:.0f} s",
        "published": published,
        "publish_s": round(float(out["seconds"]), 2),
        "counted_at_end": at_end,
        "counted_final": counted(),
        "caught_up_after_s": round(caught_up_s, 2) if caught_up_s is not None else None,
        "max_backlog": backlog,
        "max_lag_s": round(backlog / RATE, 2),
        "server_skipped": str(skipped.text_content()) if skipped.count() else "none",
        "dom_nodes_before": before_nodes,
        "dom_nodes_peak": peak_nodes,
        "dom_nodes_after": nodes(),
        **_summary(_long_tasks(page, mark)),
    }


def bench_console(stack: Stack, work: Path) -> list[Row]:
    work.mkdir(parents=True, exist_ok=True)
    console.build()  # into the folder the gateway serves (the stack's console_dir)
    seeded_s = _seed(stack, PROGRAMS)
    rows: list[Row] = [
        {
            "bench": "console",
            "case": f"seed {PROGRAMS} programs (parallel POSTs through the gateway)",
            "seconds": round(seeded_s, 1),
            "per_s": round(PROGRAMS / seeded_s),
        }
    ]
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.add_init_script(_OBSERVE)
        page = context.new_page()
        # Sign in once (the token stays in this tab's sessionStorage).
        page.goto(stack.console_url)
        page.get_by_label("Access token").fill(stack.admin_token)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("navigation", name="Pages").wait_for()

        # A fresh load of the Programs page, signed in.
        page.goto(f"{stack.console_url}#/programs")
        page.reload()
        started = time.perf_counter()
        rows_loc = page.get_by_role("table", name="Programs").locator("tbody tr")
        rows_loc.first.wait_for()
        first_rows_s = time.perf_counter() - started
        fcp = page.evaluate("window.__perf.paints['first-contentful-paint']")
        load_tasks = _long_tasks(page)
        rows.append(
            {
                "bench": "console",
                "case": f"Programs page, fresh load, {PROGRAMS} programs",
                "fcp_ms": round(float(fcp), 1),
                "first_rows_ms": round(first_rows_s * 1000, 1),
                "rows": rows_loc.count(),
                **_summary(load_tasks),
            }
        )
        mark = float(page.evaluate("performance.now()"))
        paging: list[float] = []
        for n in range(2, PAGES + 2):
            started = time.perf_counter()
            page.get_by_role("button", name="Next").click()
            page.get_by_text(f"Page {n}", exact=True).wait_for()
            page.locator("table[aria-label='Programs'][aria-busy='false']").wait_for()
            paging.append(time.perf_counter() - started)
        rows.append(
            {
                "bench": "console",
                "case": f"Programs page, Next {PAGES} times (50 rows a page)",
                "page_ms_median": round(sorted(paging)[len(paging) // 2] * 1000, 1),
                "page_ms_max": round(max(paging) * 1000, 1),
                **_summary(_long_tasks(page, mark)),
            }
        )

        rows.append(_lines(page, stack, work))
        context.close()
    rows.append(_bundle())
    return rows
