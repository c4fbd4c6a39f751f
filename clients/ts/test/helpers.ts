import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll } from "vitest";
import type { Clock } from "../src/clock.js";
import { createLoupeClient, type LoupeClientOptions } from "../src/index.js";

export const BASE = "http://loupe.test";
export const api = (path: string): string => `${BASE}${path}`;

export const server = setupServer();

export function useServer(): void {
  beforeAll(() => server.listen({ onUnhandledFrame: "error" }));
  afterEach(() => server.resetHandlers());
  afterAll(() => server.close());
}

/** A clock that never waits: `sleep` moves time on and records the wait. */
export class FakeClock implements Clock {
  t = 1_000_000;
  readonly sleeps: number[] = [];
  now = (): number => this.t;
  sleep = async (ms: number): Promise<void> => {
    this.sleeps.push(ms);
    this.t += ms;
  };
  advance(ms: number): void {
    this.t += ms;
  }
}

let dbCounter = 0;
export function uniqueDb(): string {
  dbCounter += 1;
  return `loupe-test-${process.pid}-${dbCounter}-${Math.random().toString(36).slice(2)}`;
}

export function makeClient(options: LoupeClientOptions = {}) {
  const clock = options.clock instanceof FakeClock ? options.clock : new FakeClock();
  const client = createLoupeClient({
    baseUrl: BASE,
    token: "loupe_test",
    clock,
    dbName: uniqueDb(),
    ...options,
  });
  return { client, clock };
}

export const PROGRAM_ID = "7d1c2a7e-0f7b-4a55-9d4e-2b8f6f7c1a11";
export const OTHER_ID = "0b9a1f4e-3c2d-4e5f-8a6b-7c8d9e0f1a2b";

export function program(id = PROGRAM_ID, revision = 1, name = "Coin tray") {
  return {
    id,
    name,
    description: "",
    tags: [],
    archived: false,
    revision,
    master_image_sha256: null,
    data_checksum: `sha256:${revision}`,
    created_at: "2026-01-01T00:00:00Z",
    updated_at: "2026-01-01T00:00:00Z",
    archived_at: null,
    schema_version: 1,
    config: {},
    last_backup_at: null,
    migration_status: "native",
    legacy_id: null,
    version: revision,
  };
}

export function problem(status: number, title: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  return new Response(
    JSON.stringify({ type: "about:blank", title, status, detail: `${title} (test)`, request_id: "req-1", ...extra }),
    { status, headers: { "Content-Type": "application/problem+json", "X-Request-Id": "req-1", ...headers } },
  );
}
