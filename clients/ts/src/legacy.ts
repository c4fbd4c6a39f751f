// The browser-side legacy migration: the old frontend's `vision_programs` into Loupe.
import { LoupeProblem } from "./problem.js";
import type { components } from "./schema/catalog.js";
import { QUEUE_CONTROL_HEADER, type Transport } from "./transport.js";

export type MigrationReport = components["schemas"]["Report"];
export type MigrationItem = components["schemas"]["ItemReport"];
export type RollbackReport = components["schemas"]["RollbackReport"];

export const LEGACY_KEY = "vision_programs";
export const BACKUP_KEY = "vision_programs_backup";
export const COMPLETED_KEY = "migration_completed";

/** The part of `Storage` the migration uses (window.localStorage, or a stand-in in tests). */
export type KeyValueStorage = Pick<Storage, "getItem" | "setItem" | "removeItem">;

export interface MigrateOptions {
  /** Only report what would happen (default true). */
  dryRun?: boolean;
  storage?: KeyValueStorage;
}

export interface MigrationOutcome {
  /** `nothing_to_migrate`: no `vision_programs` key (never there, or removed by an earlier run). */
  status: "dry_run" | "applied" | "nothing_to_migrate";
  report: MigrationReport | null;
  runId: string | null;
  /** Every item the run imported or revised was read back and verified, none failed. */
  verified: boolean;
  /** `vision_programs` was removed (its copy stays under `vision_programs_backup`). */
  removedLegacyKey: boolean;
  /** Items the run did not bring over (`invalid`, `failed`); they stay in the backup key. */
  leftBehind: MigrationItem[];
}

export interface RollbackOutcome {
  report: RollbackReport;
  /** `vision_programs` was put back from `vision_programs_backup`. */
  restoredLegacyKey: boolean;
}

const CARRIED: ReadonlySet<string> = new Set(["imported", "revised", "already_migrated", "duplicate"]);

function defaultStorage(): KeyValueStorage {
  const storage = (globalThis as { localStorage?: KeyValueStorage }).localStorage;
  if (!storage) throw new Error("no localStorage here: pass `storage`");
  return storage;
}

/** What the server's report says about an applied run. */
export function isVerified(report: MigrationReport): boolean {
  return report.items.every(
    (item) =>
      item.outcome !== "failed" &&
      (!(item.outcome === "imported" || item.outcome === "revised") || Boolean(item.program_id)),
  );
}

export async function migrateFromLocalStorage(
  transport: Transport,
  options: MigrateOptions = {},
): Promise<MigrationOutcome> {
  const storage = options.storage ?? defaultStorage();
  const dryRun = options.dryRun ?? true;
  const raw = storage.getItem(LEGACY_KEY);
  if (raw === null) {
    return {
      status: "nothing_to_migrate",
      report: null,
      runId: null,
      verified: storage.getItem(COMPLETED_KEY) !== null,
      removedLegacyKey: false,
      leftBehind: [],
    };
  }
  if (!dryRun && storage.getItem(BACKUP_KEY) === null) storage.setItem(BACKUP_KEY, raw);
  const response = await transport.fetch(`${transport.baseUrl}/api/migrations/legacy?dry_run=${dryRun}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", [QUEUE_CONTROL_HEADER]: "never" },
    body: legacyBody(raw),
  });
  if (!response.ok) throw await LoupeProblem.fromResponse(response);
  const report = (await response.json()) as MigrationReport;
  const leftBehind = report.items.filter((item) => !CARRIED.has(item.outcome));
  if (dryRun) {
    return { status: "dry_run", report, runId: null, verified: false, removedLegacyKey: false, leftBehind };
  }
  const verified = isVerified(report);
  if (storage.getItem(COMPLETED_KEY) === null) storage.setItem(COMPLETED_KEY, new Date().toISOString());
  if (verified) storage.removeItem(LEGACY_KEY);
  return { status: "applied", report, runId: report.run_id ?? null, verified, removedLegacyKey: verified, leftBehind };
}

export async function rollbackMigration(
  transport: Transport,
  runId: string,
  options: { storage?: KeyValueStorage } = {},
): Promise<RollbackOutcome> {
  const storage = options.storage ?? defaultStorage();
  const response = await transport.fetch(
    `${transport.baseUrl}/api/migrations/${encodeURIComponent(runId)}/rollback`,
    { method: "POST", headers: { [QUEUE_CONTROL_HEADER]: "never" } },
  );
  if (!response.ok) throw await LoupeProblem.fromResponse(response);
  const report = (await response.json()) as RollbackReport;
  const backup = storage.getItem(BACKUP_KEY);
  let restoredLegacyKey = false;
  if (backup !== null && storage.getItem(LEGACY_KEY) === null) {
    storage.setItem(LEGACY_KEY, backup);
    restoredLegacyKey = true;
  }
  storage.removeItem(COMPLETED_KEY);
  return { report, restoredLegacyKey };
}

/** The stored value as the server takes it: the array (or backup file) itself, else the raw string. */
function legacyBody(raw: string): string {
  try {
    const parsed: unknown = JSON.parse(raw);
    if (typeof parsed === "object" && parsed !== null) return raw;
  } catch {
    // not JSON: let the server say so in its problem
  }
  return JSON.stringify({ [LEGACY_KEY]: raw });
}
