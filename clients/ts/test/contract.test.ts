import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { LoupeProblem, SERVICE_NAMES, isConflict, isRetryable, parseRetryAfter, serviceOf } from "../src/index.js";
import { percentile } from "../src/stats.js";

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
