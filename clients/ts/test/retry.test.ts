import { http, HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import { LoupeProblem, backoffDelay, nextDelay, retryPolicy } from "../src/index.js";
import { PROGRAM_ID, api, makeClient, problem, program, server, useServer } from "./helpers.js";

useServer();

describe("retry rules", () => {
  it("retries a GET on 503 and answers the success", async () => {
    let calls = 0;
    server.use(
      http.get(api("/api/programs/:id"), () => {
        calls += 1;
        return calls < 3 ? problem(503, "Service Unavailable") : HttpResponse.json(program());
      }),
    );
    const { client, clock } = makeClient({ retry: { random: () => 0.5 } });
    const { data } = await client.catalog.GET("/api/programs/{program_id}", {
      params: { path: { program_id: PROGRAM_ID } },
    });
    expect(data?.id).toBe(PROGRAM_ID);
    expect(calls).toBe(3);
    expect(clock.sleeps).toEqual([150, 300]); // full jitter of 300·2^(n-1) with random 0.5
    expect(client.stats().retries).toBe(2);
  });

  it.each([429, 502, 504])("retries a GET on %i", async (status) => {
    let calls = 0;
    server.use(
      http.get(api("/api/results"), () => {
        calls += 1;
        return calls === 1 ? problem(status, "busy") : HttpResponse.json({ items: [], next_cursor: null });
      }),
    );
    const { client } = makeClient();
    const { data } = await client.catalog.GET("/api/results");
    expect(data?.items).toEqual([]);
    expect(calls).toBe(2);
  });

  it.each([500, 400, 404, 409, 412, 422])("does not retry a GET answered %i", async (status) => {
    let calls = 0;
    server.use(
      http.get(api("/api/results"), () => {
        calls += 1;
        return problem(status, "no");
      }),
    );
    const { client } = makeClient();
    const { error, response } = await client.catalog.GET("/api/results");
    expect(response.status).toBe(status);
    expect(error).toMatchObject({ status });
    expect(calls).toBe(1);
  });

  it("stops after 4 attempts and throws a network LoupeProblem when nothing is kept", async () => {
    let calls = 0;
    server.use(
      http.get(api("/api/audit"), () => {
        calls += 1;
        return HttpResponse.error();
      }),
    );
    const { client, clock } = makeClient({ breaker: false });
    const failure = await client.catalog.GET("/api/audit").catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(LoupeProblem);
    expect((failure as LoupeProblem).status).toBe(0);
    expect(calls).toBe(4);
    expect(clock.sleeps).toHaveLength(3);
  });

  it("waits what Retry-After says, in seconds or as an HTTP date", async () => {
    let calls = 0;
    server.use(
      http.get(api("/api/results"), () => {
        calls += 1;
        if (calls === 1) return new Response(null, { status: 503, headers: { "Retry-After": "7" } });
        if (calls === 2) {
          const date = new Date(Date.now() + 12_000).toUTCString();
          return new Response(null, { status: 429, headers: { "Retry-After": date } });
        }
        return HttpResponse.json({ items: [], next_cursor: null });
      }),
    );
    const { client, clock } = makeClient();
    await client.catalog.GET("/api/results");
    expect(clock.sleeps[0]).toBe(7000);
    expect(clock.sleeps[1]).toBeGreaterThan(10_000);
    expect(clock.sleeps[1]).toBeLessThanOrEqual(12_000);
  });

  it("gives up at once when Retry-After is beyond the cap", async () => {
    let calls = 0;
    server.use(
      http.get(api("/api/results"), () => {
        calls += 1;
        return new Response(null, { status: 503, headers: { "Retry-After": "120" } });
      }),
    );
    const { client } = makeClient();
    const { response } = await client.catalog.GET("/api/results");
    expect(response.status).toBe(503);
    expect(calls).toBe(1);
  });

  it("caps the backoff and jitters below the ceiling", () => {
    const policy = retryPolicy({ random: () => 0.999999 });
    expect(backoffDelay(1, policy)).toBeLessThan(300);
    expect(backoffDelay(3, policy)).toBeLessThan(1200);
    expect(backoffDelay(20, policy)).toBeLessThan(30_000);
    expect(backoffDelay(20, policy)).toBeGreaterThan(29_000);
    expect(nextDelay(4, undefined, policy, 0)).toBeUndefined();
  });
});

describe("writes and Idempotency-Key", () => {
  it("adds a UUID key to every write and keeps it across retries", async () => {
    const keys: (string | null)[] = [];
    server.use(
      http.post(api("/api/programs"), ({ request }) => {
        keys.push(request.headers.get("Idempotency-Key"));
        return keys.length < 3 ? problem(502, "Bad Gateway") : HttpResponse.json(program(), { status: 201 });
      }),
    );
    const { client } = makeClient();
    const result = await client.catalog.POST("/api/programs", { body: { name: "Coin tray", config: {} } });
    expect(result.response.status).toBe(201);
    expect(keys).toHaveLength(3);
    expect(keys[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(keys).size).toBe(1);
  });

  it("keeps the caller's own key", async () => {
    let key: string | null = null;
    server.use(
      http.post(api("/api/programs"), ({ request }) => {
        key = request.headers.get("Idempotency-Key");
        return HttpResponse.json(program(), { status: 201 });
      }),
    );
    const { client } = makeClient();
    await client.catalog.POST("/api/programs", {
      body: { name: "Coin tray", config: {} },
      headers: { "Idempotency-Key": "mine-1" },
    });
    expect(key).toBe("mine-1");
  });

  it.each([409, 412, 422])("never retries a write answered %i", async (status) => {
    let calls = 0;
    server.use(
      http.put(api("/api/programs/:id"), () => {
        calls += 1;
        return problem(status, "no", status === 409 ? {} : {});
      }),
    );
    const { client } = makeClient();
    const result = await client.catalog.PUT("/api/programs/{program_id}", {
      params: { path: { program_id: PROGRAM_ID }, header: { "if-match": '"r1"' } },
      body: { name: "x", config: {} },
    });
    expect(result.response.status).toBe(status);
    expect(calls).toBe(1);
  });

  it("does not retry an unsafe method without a key (outside /api/)", async () => {
    let calls = 0;
    server.use(
      http.post(api("/hooks/thing"), ({ request }) => {
        calls += 1;
        expect(request.headers.has("Idempotency-Key")).toBe(false);
        return new Response(null, { status: 503 });
      }),
    );
    const { client } = makeClient();
    const response = await client.fetch(api("/hooks/thing"), { method: "POST" });
    expect(response.status).toBe(503);
    expect(calls).toBe(1);
  });

  it("sends the bearer token from getToken", async () => {
    let auth: string | null = null;
    server.use(
      http.get(api("/api/results"), ({ request }) => {
        auth = request.headers.get("Authorization");
        return HttpResponse.json({ items: [], next_cursor: null });
      }),
    );
    const { client } = makeClient({ token: undefined, getToken: async () => "fresh" });
    await client.catalog.GET("/api/results");
    expect(auth).toBe("Bearer fresh");
  });
});
