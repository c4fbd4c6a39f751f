// The JSON cache: the last answer of each GET with its ETag, TTLs per resource, and the
// fallback for reads while Loupe is unreachable.
import type { CacheRecord, Db } from "./db.js";

export interface CacheOptions {
  /** TTL in ms per path prefix; the longest matching prefix wins. */
  ttl?: Record<string, number>;
  /** TTL for paths no prefix matches (default 0: always revalidate). */
  defaultTtlMs?: number;
  /** Entries kept in memory and in IndexedDB (default 500; the oldest go first). */
  maxEntries?: number;
  /** Keep entries in IndexedDB for reads after a reload while offline (default true). */
  persist?: boolean;
}

export const DEFAULT_TTL: Readonly<Record<string, number>> = {
  "/api/programs": 5 * 60_000,
  "/api/results": 60_000,
};

/** Header the client adds to an answer from its cache: `ttl`, `revalidated` or `stale`. */
export const CACHE_HEADER = "X-Loupe-Cache";
/** `1` on an answer served from the cache because Loupe could not be reached. */
export const STALE_HEADER = "X-Loupe-Stale";
/** When the answer served from the cache was stored (RFC 3339). */
export const STORED_AT_HEADER = "X-Loupe-Stored-At";

const KEPT_HEADERS = ["content-type", "etag", "x-request-id", "last-modified", "location"];

export class JsonCache {
  private readonly entries = new Map<string, CacheRecord>();
  private readonly ttl: [string, number][];
  private readonly defaultTtlMs: number;
  private readonly maxEntries: number;

  constructor(
    options: CacheOptions,
    private readonly db: Promise<Db | null>,
  ) {
    this.ttl = Object.entries({ ...DEFAULT_TTL, ...options.ttl }).sort((a, b) => b[0].length - a[0].length);
    this.defaultTtlMs = options.defaultTtlMs ?? 0;
    this.maxEntries = options.maxEntries ?? 500;
    if (options.persist === false) this.db = Promise.resolve(null);
  }

  ttlFor(path: string): number {
    for (const [prefix, ms] of this.ttl) {
      if (path === prefix || path.startsWith(prefix.endsWith("/") ? prefix : `${prefix}/`)) return ms;
    }
    return this.defaultTtlMs;
  }

  async get(key: string): Promise<CacheRecord | undefined> {
    const hit = this.entries.get(key);
    if (hit) return hit;
    const db = await this.db;
    const stored = db ? await db.get("cache", key).catch(() => undefined) : undefined;
    if (stored) this.remember(stored);
    return stored;
  }

  /** Keep a 200 JSON answer; returns the record (the body is read from a clone). */
  async put(key: string, path: string, response: Response, now: number): Promise<CacheRecord> {
    const headers: Record<string, string> = {};
    for (const name of KEPT_HEADERS) {
      const value = response.headers.get(name);
      if (value !== null) headers[name] = value;
    }
    const record: CacheRecord = {
      key,
      url: response.url || key,
      path,
      status: response.status,
      headers,
      body: await response.clone().text(),
      etag: response.headers.get("ETag"),
      storedAt: now,
    };
    this.remember(record);
    void this.persist(record);
    return record;
  }

  touch(record: CacheRecord, now: number): void {
    record.storedAt = now;
    this.remember(record);
    void this.persist(record);
  }

  /** Forget every entry whose path starts with `prefix` (after a write to that resource). */
  async invalidate(prefix: string): Promise<void> {
    const gone = [...this.entries.values()].filter((e) => e.path === prefix || e.path.startsWith(`${prefix}/`));
    for (const entry of gone) this.entries.delete(entry.key);
    const db = await this.db;
    if (!db) return;
    const all = await db.getAll("cache").catch(() => []);
    await Promise.all(
      all
        .filter((e) => e.path === prefix || e.path.startsWith(`${prefix}/`))
        .map((e) => db.delete("cache", e.key).catch(() => undefined)),
    );
  }

  async clear(): Promise<void> {
    this.entries.clear();
    const db = await this.db;
    await db?.clear("cache").catch(() => undefined);
  }

  private remember(record: CacheRecord): void {
    this.entries.delete(record.key);
    this.entries.set(record.key, record);
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }

  private async persist(record: CacheRecord): Promise<void> {
    const db = await this.db;
    if (!db) return;
    try {
      await db.put("cache", record);
      const count = await db.count("cache");
      if (count > this.maxEntries) {
        let cursor = await db.transaction("cache", "readwrite").store.index("byStoredAt").openCursor();
        for (let extra = count - this.maxEntries; cursor && extra > 0; extra -= 1) {
          await cursor.delete();
          cursor = await cursor.continue();
        }
      }
    } catch {
      // a full or unavailable IndexedDB only costs the offline fallback
    }
  }
}

/** A Response made from a kept answer. */
export function cachedResponse(record: CacheRecord, how: "ttl" | "revalidated" | "stale"): Response {
  const headers = new Headers(record.headers);
  headers.set(CACHE_HEADER, how);
  headers.set(STORED_AT_HEADER, new Date(record.storedAt).toISOString());
  if (how === "stale") headers.set(STALE_HEADER, "1");
  return new Response(record.body, { status: record.status, headers });
}

export function isJson(response: Response): boolean {
  const type = response.headers.get("Content-Type") ?? "";
  return /^application\/(.+\+)?json\b/i.test(type);
}
