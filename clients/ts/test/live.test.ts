import { http, HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import type { LiveStatus, StoredResult } from "../src/index.js";
import { api, makeClient, problem, server, useServer } from "./helpers.js";

useServer();

const result = (n: number): StoredResult => ({
  result_id: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`,
  line_id: "L1",
  verdict: "fail",
  captured_at: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
  recorded_at: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
});

const frame = (r: StoredResult): string => `event: result\nid: ${r.result_id}\ndata: ${JSON.stringify(r)}\n\n`;

function stream(chunks: string[]): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
  return new Response(body, { headers: { "Content-Type": "text/event-stream" } });
}

describe("subscribeResults", () => {
  it("parses the stream, resumes with Last-Event-ID, fills the gap from the list and de-duplicates", async () => {
    const connections: { lastEventId: string | null; auth: string | null; query: string }[] = [];
    const listed: string[] = [];
    server.use(
      http.get(api("/api/results/stream"), ({ request }) => {
        const url = new URL(request.url);
        connections.push({
          lastEventId: request.headers.get("Last-Event-ID"),
          auth: request.headers.get("Authorization"),
          query: url.search,
        });
        if (connections.length === 1) {
          // split inside a frame on purpose: the parser must join the pieces
          const text = `: connected\n\n${frame(result(1))}${frame(result(2))}`;
          return stream([text.slice(0, 40), text.slice(40)]);
        }
        if (connections.length === 2) {
          // the server replays what came after Last-Event-ID (3, already filled from the list), then live (4)
          return stream([": connected\n\n", frame(result(3)), frame(result(4))]);
        }
        return problem(401, "Unauthorized"); // ends the subscription
      }),
      http.get(api("/api/results/:id"), () => HttpResponse.json(result(3))),
      http.get(api("/api/results"), ({ request }) => {
        const url = new URL(request.url);
        listed.push(url.search);
        // newest first, overlapping what the stream sends
        return HttpResponse.json({ items: [result(3), result(2)], next_cursor: null });
      }),
    );
    const { client } = makeClient();
    const got: string[] = [];
    const statuses: LiveStatus[] = [];
    const errors: number[] = [];
    await new Promise<void>((resolve) => {
      client.subscribeResults(
        { line_id: "L1", verdict: "fail" },
        (r) => got.push(r.result_id.slice(-2)),
        {
          onStatus: (s) => {
            statuses.push(s);
            if (s === "closed") resolve();
          },
          onError: (e) => errors.push(e.status),
          gapMarginMs: 1000,
        },
      );
    });
    expect(got).toEqual(["01", "02", "03", "04"]);
    expect(connections[0]).toMatchObject({ lastEventId: null, auth: "Bearer loupe_test", query: "?line_id=L1&verdict=fail" });
    expect(connections[1]?.lastEventId).toBe(result(2).result_id);
    expect(connections[2]?.lastEventId).toBe(result(4).result_id);
    const since = new URLSearchParams(listed[0]).get("since");
    expect(since).toBe(new Date(Date.UTC(2026, 0, 1, 0, 0, 1)).toISOString()); // last seen (2 s) − 1 s margin
    expect(new URLSearchParams(listed[0]).get("line_id")).toBe("L1");
    expect(errors).toEqual([401]);
    expect(statuses).toEqual(["connecting", "live", "reconnecting", "live", "reconnecting", "closed"]);
  });

  it("surfaces event: dropped and fills from the list", async () => {
    let connections = 0;
    let listed = 0;
    server.use(
      http.get(api("/api/results/stream"), () => {
        connections += 1;
        if (connections > 1) return problem(403, "Forbidden");
        return stream([": connected\n\n", frame(result(1)), 'event: dropped\ndata: {"count": 7}\n\n']);
      }),
      http.get(api("/api/results"), () => {
        listed += 1;
        return HttpResponse.json({ items: [result(5), result(1)], next_cursor: null });
      }),
    );
    const { client } = makeClient();
    const got: string[] = [];
    const dropped: number[] = [];
    await new Promise<void>((resolve) =>
      client.subscribeResults({}, (r) => got.push(r.result_id.slice(-2)), {
        onDropped: (n) => dropped.push(n),
        onStatus: (s) => s === "closed" && resolve(),
      }),
    );
    expect(dropped).toEqual([7]);
    expect(listed).toBeGreaterThanOrEqual(1);
    expect(got).toEqual(["01", "05"]);
  });

  it("fills every gap once its closing result is stored, each from its own window, even while another fill runs", async () => {
    const store = [1, 2, 3, 4, 5, 6].map(result);
    const lookups: string[] = [];
    const windows: { since: string | null; until: string | null }[] = [];
    let connections = 0;
    server.use(
      http.get(api("/api/results/stream"), () => {
        connections += 1;
        if (connections > 1) return problem(403, "Forbidden");
        // 2 and 3 skipped before 4, then 5 skipped before 6: the second gap comes while the
        // first one's fill is still waiting for 4 to be stored
        return stream([
          ": connected\n\n",
          frame(result(1)),
          'event: dropped\ndata: {"count": 2}\n\n',
          frame(result(4)),
          'event: dropped\ndata: {"count": 1}\n\n',
          frame(result(6)),
        ]);
      }),
      http.get(api("/api/results/:id"), ({ params }) => {
        const id = String(params["id"]);
        lookups.push(id.slice(-2));
        // the feed runs ahead of the database: the first look finds 4 not yet stored
        if (lookups.length === 1) return problem(404, "Not Found");
        return HttpResponse.json(store.find((r) => r.result_id === id));
      }),
      http.get(api("/api/results"), ({ request }) => {
        const query = new URL(request.url).searchParams;
        const since = query.get("since");
        const until = query.get("until");
        windows.push({ since, until });
        const items = store
          .filter((r) => (!since || r.captured_at >= since) && (!until || r.captured_at < until))
          .reverse();
        return HttpResponse.json({ items, next_cursor: null });
      }),
    );
    const { client, clock } = makeClient();
    const got: string[] = [];
    const fills: number[] = [];
    await new Promise<void>((resolve) =>
      client.subscribeResults({}, (r) => got.push(r.result_id.slice(-2)), {
        gapMarginMs: 1000,
        onGapFill: (f) => fills.push(f.delivered),
        onStatus: (s) => s === "closed" && resolve(),
      }),
    );
    expect([...got].sort()).toEqual(["01", "02", "03", "04", "05", "06"]);
    expect(got.slice(0, 2)).toEqual(["01", "04"]); // the stream's own come as they come
    expect(lookups).toEqual(["04", "04", "06"]);
    expect(clock.sleeps[0]).toBe(100); // one pause while 4 was not stored yet
    const at = (n: number): string => new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString();
    expect(windows).toEqual([
      { since: at(0), until: at(5) }, // 1 s before 1 to 1 s after 4
      { since: at(3), until: at(7) }, // 1 s before 4 to 1 s after 6
    ]);
    expect(fills).toEqual([2, 1]);
  });

  it("reconnects with backoff after errors and honours Retry-After; unsubscribe stops it", async () => {
    let connections = 0;
    server.use(
      http.get(api("/api/results/stream"), () => {
        connections += 1;
        if (connections === 1) return new Response(null, { status: 503, headers: { "Retry-After": "10" } });
        if (connections === 2) return HttpResponse.error();
        return stream([": connected\n\n", frame(result(9))]);
      }),
    );
    const { client, clock } = makeClient();
    let unsubscribe = (): void => undefined;
    const first = new Promise<StoredResult>((resolve) => {
      unsubscribe = client.subscribeResults({}, resolve, { backoffBaseMs: 1000, backoffCapMs: 4000 });
    });
    expect((await first).result_id).toBe(result(9).result_id);
    unsubscribe();
    expect(clock.sleeps[0]).toBe(10_000);
    expect(clock.sleeps[1]).toBeLessThan(2000);
  });
});
