import { http, HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import { CIRCUIT_HEADER, CircuitBreaker } from "../src/index.js";
import { FakeClock, api, makeClient, problem, server, useServer } from "./helpers.js";

useServer();

describe("CircuitBreaker on a fake clock", () => {
  it("closed → open after N failures → half-open probe → closed", () => {
    const clock = new FakeClock();
    const changes: string[] = [];
    const breaker = new CircuitBreaker(clock, { failureThreshold: 3, cooldownMs: 10_000 }, (s) => changes.push(s));
    breaker.failure();
    breaker.failure();
    breaker.success(); // not consecutive: counting starts again
    breaker.failure();
    breaker.failure();
    expect(breaker.state).toBe("closed");
    breaker.failure();
    expect(breaker.state).toBe("open");
    expect(breaker.tryPass()).toBe(false);
    clock.advance(9_999);
    expect(breaker.tryPass()).toBe(false);
    clock.advance(1);
    expect(breaker.state).toBe("half-open");
    expect(breaker.tryPass()).toBe(true); // the probe
    expect(breaker.tryPass()).toBe(false); // only one
    breaker.success();
    expect(breaker.state).toBe("closed");
    expect(breaker.tryPass()).toBe(true);
    expect(changes).toEqual(["open", "half-open", "closed"]);
  });

  it("a failed probe opens it again for a new cool-down", () => {
    const clock = new FakeClock();
    const breaker = new CircuitBreaker(clock, { failureThreshold: 1, cooldownMs: 1000 });
    breaker.failure();
    clock.advance(1000);
    expect(breaker.tryPass()).toBe(true);
    breaker.failure();
    expect(breaker.state).toBe("open");
    clock.advance(999);
    expect(breaker.tryPass()).toBe(false);
    clock.advance(1);
    expect(breaker.tryPass()).toBe(true);
  });
});

describe("breakers in the client", () => {
  it("opens per service, fails fast with a 503 problem, and closes after a good probe", async () => {
    let catalogCalls = 0;
    let healthy = false;
    server.use(
      http.get(api("/api/results"), () => {
        catalogCalls += 1;
        return healthy ? HttpResponse.json({ items: [], next_cursor: null }) : problem(503, "down");
      }),
      http.get(api("/api/images/:sha/metadata"), () => HttpResponse.json({ sha256: "a" })),
    );
    const states: string[] = [];
    const { client, clock } = makeClient({
      retry: false,
      cache: false,
      breaker: { failureThreshold: 3, cooldownMs: 30_000 },
      onBreakerChange: (service, state) => states.push(`${service}:${state}`),
    });
    for (let i = 0; i < 3; i += 1) await client.catalog.GET("/api/results");
    expect(client.breakers().catalog).toBe("open");
    const fast = await client.catalog.GET("/api/results");
    expect(catalogCalls).toBe(3);
    expect(fast.response.status).toBe(503);
    expect(fast.response.headers.get(CIRCUIT_HEADER)).toBe("open");
    expect(fast.error).toMatchObject({ type: "about:blank", status: 503 });
    expect((fast.error as { detail: string }).detail).toMatch(/circuit for the catalog service is open/);

    // another service is not affected
    const other = await client.images.GET("/api/images/{sha256}/metadata", { params: { path: { sha256: "a" } } });
    expect(other.response.status).toBe(200);

    clock.advance(30_000);
    healthy = true;
    const probe = await client.catalog.GET("/api/results");
    expect(probe.response.status).toBe(200);
    expect(client.breakers().catalog).toBe("closed");
    expect(states).toEqual(["catalog:open", "catalog:half-open", "catalog:closed"]);
    expect(client.stats().services.catalog.errors).toBe(4);
  });

  it("counts network errors, not 4xx", async () => {
    server.use(
      http.get(api("/api/audit"), () => HttpResponse.error()),
      http.get(api("/api/results"), () => problem(404, "Not Found")),
    );
    const { client } = makeClient({ retry: false, cache: false, breaker: { failureThreshold: 2 } });
    for (let i = 0; i < 5; i += 1) await client.catalog.GET("/api/results");
    expect(client.breakers().catalog).toBe("closed");
    await client.catalog.GET("/api/audit").catch(() => undefined);
    await client.catalog.GET("/api/audit").catch(() => undefined);
    expect(client.breakers().catalog).toBe("open");
  });
});
