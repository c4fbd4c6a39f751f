// The client's IndexedDB database: the outbox of writes and the last JSON answers kept.
import { openDB, type DBSchema, type IDBPDatabase } from "idb";

export interface StoredHeaders {
  [name: string]: string;
}

export interface OutboxRecord {
  seq?: number;
  id: string;
  method: string;
  /** The absolute URL the write goes to. */
  url: string;
  /** The API path (no base URL, no query), for display and for chaining. */
  path: string;
  headers: StoredHeaders;
  body: string | null;
  idempotencyKey: string;
  /** Queued behind another write to the same URL: its If-Match follows that write's ETag. */
  chained: boolean;
  createdAt: number;
  attempts: number;
  state: "pending" | "conflict" | "failed";
  problem?: { status: number; title: string; detail: string; requestId?: string | undefined };
}

export interface CacheRecord {
  key: string;
  url: string;
  path: string;
  status: number;
  headers: StoredHeaders;
  body: string;
  etag: string | null;
  storedAt: number;
}

interface LoupeDb extends DBSchema {
  outbox: { key: number; value: OutboxRecord; indexes: { byId: string } };
  cache: { key: string; value: CacheRecord; indexes: { byStoredAt: number } };
}

export type Db = IDBPDatabase<LoupeDb>;

export function hasIndexedDb(): boolean {
  return typeof indexedDB !== "undefined";
}

export function openLoupeDb(name: string): Promise<Db> {
  return openDB<LoupeDb>(name, 1, {
    upgrade(db) {
      const outbox = db.createObjectStore("outbox", { keyPath: "seq", autoIncrement: true });
      outbox.createIndex("byId", "id", { unique: true });
      const cache = db.createObjectStore("cache", { keyPath: "key" });
      cache.createIndex("byStoredAt", "storedAt");
    },
  });
}
