import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { LoupeProblem, SERVICE_NAMES, isConflict, isRetryable, parseRetryAfter, serviceOf } from "../src/index.js";
import { StatsRecorder, percentile } from "../src/stats.js";

describe("serviceOf follows the OpenAPI documents", () => {
  it.each(SERVICE_NAMES)("every /api/ path of %s maps to it", (service) => {
    const document = JSON.parse(readFileSync(new URL(`../openapi/${service}.json`, import.meta.url), "utf8")) as {
      paths: Record<string, unknown>;
    };
    const paths = Object.keys(document.paths).filter((p) => p.startsWith("/api/"));
    expect(paths.length).toBeGreaterThan(0);
    for (const path of paths) expect([path, serviceOf(path.replace(/\{[^}]+\}/g, "x"))]).toEqual([path, service]);
  });

  it("knows nothing of other paths", () => {
    expect(serviceOf("/healthz")).toBeUndefined();
    expect(serviceOf("/api/programsx")).toBeUndefined();
  });
});

describe("LoupeProblem", () => {
  it("reads an RFC 9457 document with request_id and field errors", async () => {
    const response = new Response(
      JSON.stringify({
        type: "https://loupe.dev/problems/validation",
        title: "Unprocessable Content",
        status: 422,
        detail: "1 field failed",
        instance: "/api/programs",
        request_id: "abc",
        errors: [{ field: "body.name", message: "too long" }],
      }),
      { status: 422, headers: { "Content-Type": "application/problem+json", "X-Request-Id": "hdr" } },
    );
    const problem = await LoupeProblem.fromResponse(response);
    expect(problem).toMatchObject({
      type: "https://loupe.dev/problems/validation",
      status: 422,
      detail: "1 field failed",
      instance: "/api/programs",
      requestId: "abc",
      errors: [{ field: "body.name", message: "too long" }],
    });
    expect(isConflict(problem)).toBe(false);
    expect(isRetryable(problem)).toBe(false);
  });

  it("falls back to X-Request-Id and reads Retry-After", async () => {
    const problem = await LoupeProblem.fromResponse(
      new Response("gateway down", { status: 503, statusText: "Service Unavailable", headers: { "X-Request-Id": "hdr", "Retry-After": "3" } }),
    );
    expect(problem).toMatchObject({ status: 503, requestId: "hdr", detail: "gateway down", retryAfterMs: 3000, type: "about:blank" });
    expect(isRetryable(problem)).toBe(true);
    expect(isConflict(new LoupeProblem({ status: 412 }))).toBe(true);
    expect(isConflict(new LoupeProblem({ status: 409 }))).toBe(true);
  });

  it("parses Retry-After as seconds or an HTTP date", () => {
    expect(parseRetryAfter("5", 0)).toBe(5000);
    expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:10 GMT", Date.parse("Wed, 21 Oct 2015 07:28:00 GMT"))).toBe(10_000);
    expect(parseRetryAfter("soon", 0)).toBeUndefined();
    expect(parseRetryAfter(null, 0)).toBeUndefined();
  });
});

describe("percentile", () => {
  it("is the nearest rank", () => {
    const samples = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(samples, 50)).toBe(50);
    expect(percentile(samples, 95)).toBe(95);
    expect(percentile(samples, 99)).toBe(99);
    expect(percentile([], 50)).toBe(0);
    expect(percentile([7], 99)).toBe(7);
  });
});

describe("stats()", () => {
  it("reads latency percentiles, error and cache hit rates from what was recorded, per service", () => {
    const stats = new StatsRecorder();
    // 100 catalog reads of 1..100 ms: 90 answered, 10 from the cache within the TTL.
    for (let ms = 1; ms <= 100; ms += 1) {
      stats.record({ service: "catalog", latencyMs: ms, outcome: ms > 90 ? "ttl-hit" : "network", status: 200, cacheable: true });
    }
    // 4 images calls: a 503, a network failure, a 404, a 201.
    stats.record({ service: "images", latencyMs: 10, outcome: "network", status: 503, cacheable: false });
    stats.record({ service: "images", latencyMs: 10, outcome: "failed", status: 0, cacheable: false });
    stats.record({ service: "images", latencyMs: 10, outcome: "network", status: 404, cacheable: true });
    stats.record({ service: "images", latencyMs: 10, outcome: "network", status: 201, cacheable: false });
    const snapshot = stats.snapshot();
    const catalog = snapshot.services.catalog;
    expect(catalog.latency).toMatchObject({ p50Ms: 50, p95Ms: 95, p99Ms: 99, avgMs: 50.5, samples: 100 });
    expect(catalog).toMatchObject({ operations: 100, errors: 0, cacheLookups: 100, cacheHits: 10, cacheHitRate: 0.1 });
    const images = snapshot.services.images;
    expect(images).toMatchObject({ operations: 4, errors: 2, errorRate: 0.5, clientErrors: 1, cacheLookups: 1, cacheHits: 0 });
    expect(snapshot).toMatchObject({ operations: 104, errors: 2, errorRate: 2 / 104, cacheHits: 10, cacheLookups: 101 });
    expect(snapshot.services.backup.operations).toBe(0);
  });

  it("keeps the latest 1,000 latencies for the percentiles and every one for the average", () => {
    const stats = new StatsRecorder();
    for (let i = 0; i < 1000; i += 1) stats.record({ service: "inspect", latencyMs: 1000, outcome: "network", status: 200, cacheable: false });
    for (let i = 0; i < 1000; i += 1) stats.record({ service: "inspect", latencyMs: 1, outcome: "network", status: 200, cacheable: false });
    const latency = stats.snapshot().latency;
    expect(latency).toMatchObject({ p50Ms: 1, p99Ms: 1, samples: 1000 });
    expect(latency.avgMs).toBeCloseTo(500.5, 6);
  });
});
