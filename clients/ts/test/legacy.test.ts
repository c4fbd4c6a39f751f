import { http, HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import { BACKUP_KEY, COMPLETED_KEY, LEGACY_KEY, LoupeProblem, type KeyValueStorage, type MigrationItem } from "../src/index.js";
import { api, makeClient, problem, server, useServer } from "./helpers.js";

useServer();

class MemoryStorage implements KeyValueStorage {
  readonly map = new Map<string, string>();
  getItem(key: string): string | null {
    return this.map.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.map.set(key, value);
  }
  removeItem(key: string): void {
    this.map.delete(key);
  }
}

const PROGRAMS = JSON.stringify([
  { id: "prog_1", name: "Coin tray", config: { masterImage: "data:image/png;base64,AAAA" } },
  { id: "prog_2", name: "Draft", config: {} },
  { id: "prog_3", name: "Broken", config: { masterImage: "data:text/plain;base64,AAAA" } },
]);
const RUN_ID = "5b0c6a8e-1d2f-4e3a-9b4c-5d6e7f8a9b0c";

function item(position: number, outcome: MigrationItem["outcome"], extra: Partial<MigrationItem> = {}): MigrationItem {
  return { position, legacy_id: `prog_${position + 1}`, name: `p${position}`, outcome, ...extra };
}

function legacyServer(outcomes: MigrationItem[][]) {
  const calls: { dryRun: string | null; body: string; queueHeader: string | null }[] = [];
  server.use(
    http.post(api("/api/migrations/legacy"), async ({ request }) => {
      const dryRun = new URL(request.url).searchParams.get("dry_run");
      calls.push({ dryRun, body: await request.text(), queueHeader: request.headers.get("X-Loupe-Queue") });
      const items = outcomes[Math.min(calls.length - 1, outcomes.length - 1)] ?? [];
      return HttpResponse.json(
        {
          run_id: dryRun === "true" ? null : RUN_ID,
          dry_run: dryRun === "true",
          input_sha256: "x",
          input_shape: "array",
          totals: {},
          items,
        },
        { status: dryRun === "true" ? 200 : 201 },
      );
    }),
  );
  return calls;
}

const PID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

describe("migrateFromLocalStorage", () => {
  it("a dry run reports and changes nothing in the browser", async () => {
    const calls = legacyServer([[item(0, "imported"), item(1, "imported"), item(2, "invalid", { reason_code: "not_an_image" })]]);
    const storage = new MemoryStorage();
    storage.setItem(LEGACY_KEY, PROGRAMS);
    const { client } = makeClient();
    const outcome = await client.migrateFromLocalStorage({ dryRun: true, storage });
    expect(outcome.status).toBe("dry_run");
    expect(outcome.report?.items).toHaveLength(3);
    expect(outcome.leftBehind.map((i) => i.legacy_id)).toEqual(["prog_3"]);
    expect(calls).toEqual([{ dryRun: "true", body: PROGRAMS, queueHeader: null }]);
    expect([...storage.map.keys()]).toEqual([LEGACY_KEY]);
  });

  it("applies: keeps the backup, marks completion, removes the key once every imported item is verified; twice changes nothing", async () => {
    const calls = legacyServer([
      [
        item(0, "imported", { program_id: PID, data_checksum: "c" }),
        item(1, "imported", { program_id: PID, data_checksum: "d" }),
        item(2, "invalid", { reason_code: "not_an_image" }),
      ],
    ]);
    const storage = new MemoryStorage();
    storage.setItem(LEGACY_KEY, PROGRAMS);
    const { client } = makeClient();
    const outcome = await client.migrateFromLocalStorage({ dryRun: false, storage });
    expect(outcome).toMatchObject({ status: "applied", runId: RUN_ID, verified: true, removedLegacyKey: true });
    expect(outcome.leftBehind).toHaveLength(1);
    expect(calls[0]?.dryRun).toBe("false");
    expect(storage.getItem(LEGACY_KEY)).toBeNull();
    expect(storage.getItem(BACKUP_KEY)).toBe(PROGRAMS);
    const completed = storage.getItem(COMPLETED_KEY);
    expect(completed).toMatch(/^\d{4}-\d{2}-\d{2}T/);

    const again = await client.migrateFromLocalStorage({ dryRun: false, storage });
    expect(again).toMatchObject({ status: "nothing_to_migrate", report: null, removedLegacyKey: false });
    expect(calls).toHaveLength(1);
    expect(storage.getItem(COMPLETED_KEY)).toBe(completed);
    expect(storage.getItem(BACKUP_KEY)).toBe(PROGRAMS);
  });

  it("keeps vision_programs when an item failed verification", async () => {
    legacyServer([
      [
        item(0, "imported", { program_id: PID }),
        item(1, "failed", { reason_code: "verification_failed" }),
        item(2, "already_migrated", { program_id: PID }),
      ],
    ]);
    const storage = new MemoryStorage();
    storage.setItem(LEGACY_KEY, PROGRAMS);
    const { client } = makeClient();
    const outcome = await client.migrateFromLocalStorage({ dryRun: false, storage });
    expect(outcome).toMatchObject({ status: "applied", verified: false, removedLegacyKey: false });
    expect(storage.getItem(LEGACY_KEY)).toBe(PROGRAMS);
    expect(storage.getItem(BACKUP_KEY)).toBe(PROGRAMS);
  });

  it("sends the whole-localStorage shape when the value is not JSON itself, and never queues", async () => {
    server.use(http.post(api("/api/migrations/legacy"), () => HttpResponse.error()));
    const storage = new MemoryStorage();
    storage.setItem(LEGACY_KEY, "[1,2");
    const { client } = makeClient({ retry: false });
    const failure = await client.migrateFromLocalStorage({ dryRun: false, storage }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(LoupeProblem);
    expect(await client.outbox.count()).toBe(0);
    expect(storage.getItem(LEGACY_KEY)).toBe("[1,2");

    let body = "";
    server.use(
      http.post(api("/api/migrations/legacy"), async ({ request }) => {
        body = await request.text();
        return problem(400, "Bad Request");
      }),
    );
    await expect(client.migrateFromLocalStorage({ storage })).rejects.toMatchObject({ status: 400, requestId: "req-1" });
    expect(JSON.parse(body)).toEqual({ [LEGACY_KEY]: "[1,2" });
  });

  it("rollbackMigration calls the server and puts the key back from the backup", async () => {
    let rolledBack = "";
    server.use(
      http.post(api("/api/migrations/:id/rollback"), ({ params }) => {
        rolledBack = String(params["id"]);
        return HttpResponse.json({ run_id: RUN_ID, rolled_back_at: "2026-01-01T00:00:00Z", items: [] });
      }),
    );
    const storage = new MemoryStorage();
    storage.setItem(BACKUP_KEY, PROGRAMS);
    storage.setItem(COMPLETED_KEY, "2026-01-01T00:00:00Z");
    const { client } = makeClient();
    const outcome = await client.rollbackMigration(RUN_ID, { storage });
    expect(rolledBack).toBe(RUN_ID);
    expect(outcome.restoredLegacyKey).toBe(true);
    expect(storage.getItem(LEGACY_KEY)).toBe(PROGRAMS);
    expect(storage.getItem(COMPLETED_KEY)).toBeNull();
    expect(storage.getItem(BACKUP_KEY)).toBe(PROGRAMS);
  });
});
