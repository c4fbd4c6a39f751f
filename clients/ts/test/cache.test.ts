import { http, HttpResponse } from "msw";
import { describe, expect, it, vi } from "vitest";
import { openLoupeDb } from "../src/db.js";
import { CACHE_HEADER, STALE_HEADER } from "../src/index.js";
import { FakeClock, PROGRAM_ID, api, makeClient, program, server, uniqueDb, useServer } from "./helpers.js";

useServer();

const get = (client: ReturnType<typeof makeClient>["client"]) =>
  client.catalog.GET("/api/programs/{program_id}", { params: { path: { program_id: PROGRAM_ID } } });

function programServer() {
  const seen: { ifNoneMatch: string | null }[] = [];
  let etag = '"r1"';
  server.use(
    http.get(api("/api/programs/:id"), ({ request }) => {
      const inm = request.headers.get("If-None-Match");
      seen.push({ ifNoneMatch: inm });
      if (inm === etag) return new Response(null, { status: 304, headers: { ETag: etag } });
      return HttpResponse.json(program(PROGRAM_ID, Number(etag.slice(2, -1))), { headers: { ETag: etag } });
    }),
  );
  return {
    seen,
    change(next: string) {
      etag = next;
    },
  };
}

describe("the JSON cache", () => {
  it("answers within the TTL without a request, then revalidates with If-None-Match", async () => {
    const srv = programServer();
    const { client, clock } = makeClient();
    const first = await get(client);
    expect(first.data?.revision).toBe(1);
    const second = await get(client);
    expect(second.data?.revision).toBe(1);
    expect(second.response.headers.get(CACHE_HEADER)).toBe("ttl");
    expect(srv.seen).toHaveLength(1);

    clock.advance(5 * 60_000); // programs: 5 min
    const third = await get(client);
    expect(third.data?.revision).toBe(1);
    expect(third.response.headers.get(CACHE_HEADER)).toBe("revalidated");
    expect(srv.seen[1]?.ifNoneMatch).toBe('"r1"');

    clock.advance(5 * 60_000);
    srv.change('"r2"');
    const fourth = await get(client);
    expect(fourth.data?.revision).toBe(2);
    expect(fourth.response.headers.get(CACHE_HEADER)).toBeNull();

    const stats = client.stats();
    expect(stats.cacheLookups).toBe(4);
    expect(stats.ttlHits).toBe(1);
    expect(stats.notModified).toBe(1);
    expect(stats.cacheHitRate).toBe(0.5);
    expect(stats.services.catalog.operations).toBe(4);
  });

  it("results live one minute; other resources revalidate every time by default", async () => {
    let results = 0;
    let audit = 0;
    server.use(
      http.get(api("/api/results"), () => {
        results += 1;
        return HttpResponse.json({ items: [], next_cursor: null }, { headers: { ETag: 'W/"x"' } });
      }),
      http.get(api("/api/audit"), () => {
        audit += 1;
        return HttpResponse.json({ items: [], next_cursor: null }, { headers: { ETag: 'W/"a"' } });
      }),
    );
    const { client, clock } = makeClient();
    await client.catalog.GET("/api/results");
    clock.advance(59_000);
    await client.catalog.GET("/api/results");
    expect(results).toBe(1);
    clock.advance(1000);
    await client.catalog.GET("/api/results");
    expect(results).toBe(2);
    await client.catalog.GET("/api/audit");
    await client.catalog.GET("/api/audit");
    expect(audit).toBe(2);
  });

  it("never answers a read that waits for new results from the cache", async () => {
    let asked = 0;
    server.use(
      http.get(api("/api/results"), () => {
        asked += 1;
        return HttpResponse.json({ items: [], next_cursor: null }, { headers: { ETag: 'W/"e"' } });
      }),
    );
    const dbName = uniqueDb();
    const { client } = makeClient({ dbName });
    const query = { line_id: "line-7", since: "2026-12-05T07:00:00Z", wait: 30 };
    for (let i = 0; i < 3; i += 1) {
      const page = await client.catalog.GET("/api/results", { params: { query } });
      expect(page.response.headers.get(CACHE_HEADER)).toBeNull();
    }
    expect(asked).toBe(3);
    // Nor was any of them kept: the same read without `wait` is, and is all there is.
    await client.catalog.GET("/api/results", { params: { query: { line_id: "line-7", since: query.since } } });
    const db = await openLoupeDb(dbName);
    await vi.waitFor(async () => expect(await db.count("cache")).toBe(1), { timeout: 5000 });
    const kept = (await db.getAllKeys("cache")).map(String);
    db.close();
    expect(kept).toHaveLength(1);
    expect(kept[0]).not.toContain("wait=");
  });

  it("takes TTLs from the options", async () => {
    let calls = 0;
    server.use(
      http.get(api("/api/audit"), () => {
        calls += 1;
        return HttpResponse.json({ items: [], next_cursor: null });
      }),
    );
    const { client } = makeClient({ cache: { ttl: { "/api/audit": 10_000 } } });
    await client.catalog.GET("/api/audit");
    await client.catalog.GET("/api/audit");
    expect(calls).toBe(1);
  });

  it("leaves image bytes and thumbnails to the browser's HTTP cache", async () => {
    let calls = 0;
    server.use(
      http.get(api("/api/images/:sha/thumbnail"), () => {
        calls += 1;
        return new Response(new Uint8Array([1, 2, 3]), { headers: { "Content-Type": "image/webp", ETag: '"sha"' } });
      }),
    );
    const { client } = makeClient();
    for (let i = 0; i < 2; i += 1) {
      const r = await client.images.GET("/api/images/{sha256}/thumbnail", {
        params: { path: { sha256: "a".repeat(64) }, query: {} },
        parseAs: "arrayBuffer",
      });
      expect(r.response.headers.get(CACHE_HEADER)).toBeNull();
    }
    expect(calls).toBe(2);
    expect(client.stats().cacheLookups).toBe(0);
  });

  it("forgets a resource after a write to it", async () => {
    const srv = programServer();
    server.use(http.put(api("/api/programs/:id"), () => HttpResponse.json(program(PROGRAM_ID, 2), { headers: { ETag: '"r2"' } })));
    const { client } = makeClient();
    await get(client);
    await client.catalog.PUT("/api/programs/{program_id}", {
      params: { path: { program_id: PROGRAM_ID }, header: { "if-match": '"r1"' } },
      body: { name: "x", config: {} },
    });
    srv.change('"r2"');
    const after = await get(client);
    expect(after.data?.revision).toBe(2);
    expect(srv.seen[1]?.ifNoneMatch).toBeNull();
  });

  it("answers the last kept answer, marked stale, while Loupe is unreachable — also after a reload", async () => {
    programServer();
    const dbName = uniqueDb();
    const clock = new FakeClock();
    const { client } = makeClient({ dbName, clock });
    await get(client);
    server.resetHandlers(http.get(api("/api/programs/:id"), () => HttpResponse.error()));
    clock.advance(10 * 60_000);
    const stale = await get(client);
    expect(stale.data?.id).toBe(PROGRAM_ID);
    expect(stale.response.headers.get(STALE_HEADER)).toBe("1");
    expect(client.stats().staleServed).toBe(1);

    // The answer reaches IndexedDB behind the read (write-behind): wait until it is there.
    const db = await openLoupeDb(dbName);
    await vi.waitFor(async () => expect(await db.count("cache")).toBe(1), { timeout: 5000 });
    db.close();
    const reloaded = makeClient({ dbName, clock }).client; // a new page with the same database
    const fromDb = await get(reloaded);
    expect(fromDb.data?.id).toBe(PROGRAM_ID);
    expect(fromDb.response.headers.get(STALE_HEADER)).toBe("1");
  });
});

describe("in-flight GET deduplication", () => {
  it("sends one request for concurrent identical GETs; each caller gets its own body", async () => {
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    server.use(
      http.get(api("/api/audit"), async () => {
        calls += 1;
        await gate;
        return HttpResponse.json({ items: [{ action: "x" }], next_cursor: null });
      }),
    );
    const { client } = makeClient();
    const all = Promise.all([client.catalog.GET("/api/audit"), client.catalog.GET("/api/audit"), client.catalog.GET("/api/audit")]);
    // The first request is held until the other two have joined it (a fixed wait was not
    // enough on a loaded machine: the first could finish before the others looked).
    await vi.waitFor(() => expect(client.stats().deduplicated).toBe(2), { timeout: 5000 });
    release();
    const answers = await all;
    expect(calls).toBe(1);
    for (const a of answers) expect(a.data?.items).toHaveLength(1);
    expect(client.stats().deduplicated).toBe(2);
  });

  it("does not merge GETs with different headers or URLs", async () => {
    let calls = 0;
    server.use(
      http.get(api("/api/audit"), async () => {
        calls += 1;
        return HttpResponse.json({ items: [], next_cursor: null });
      }),
    );
    const { client } = makeClient();
    await Promise.all([
      client.catalog.GET("/api/audit"),
      client.catalog.GET("/api/audit", { headers: { "Accept-Language": "de" } }),
      client.catalog.GET("/api/audit", { params: { query: { actor: "a" } } }),
    ]);
    expect(calls).toBe(3);
  });
});
