// The outbox: writes made while Loupe was unreachable, kept in IndexedDB and replayed in order,
// each exactly once thanks to its stored Idempotency-Key.
import type { Db, OutboxRecord, StoredHeaders } from "./db.js";
import { uuid } from "./ids.js";
import { IN_FLIGHT_PROBLEM, LoupeProblem, parseRetryAfter } from "./problem.js";

/** An item of the outbox as the application sees it. */
export interface OutboxItem {
  id: string;
  method: string;
  url: string;
  path: string;
  idempotencyKey: string;
  createdAt: number;
  attempts: number;
  /** `pending`: waits for replay; `conflict`: a 412 (or 409) on replay; `failed`: refused (4xx). */
  state: OutboxRecord["state"];
  chained: boolean;
  /** The JSON body as sent, or null. */
  body: unknown;
  problem?: OutboxRecord["problem"];
}

export type OutboxEvent =
  | { type: "queued"; item: OutboxItem; count: number }
  | { type: "replayed"; item: OutboxItem; status: number; etag: string | null; body: unknown; count: number }
  | { type: "conflict" | "failed"; item: OutboxItem; problem: LoupeProblem; count: number }
  | { type: "discarded"; item: OutboxItem; count: number };

export interface ReplayReport {
  replayed: number;
  conflicts: number;
  failed: number;
  /** Items still in the outbox (pending, conflicts and failures). */
  remaining: number;
  /** Why the replay stopped before the end: Loupe unreachable, or busy (429/5xx/409 in flight). */
  stopped?: "unreachable" | "busy";
}

/** What sending one stored write gave: an answer, or no answer at all. */
export type SendResult = { response: Response; circuitOpen?: boolean } | { error: unknown };

export type Sender = (record: OutboxRecord) => Promise<SendResult>;

export class Outbox {
  private listeners = new Set<(event: OutboxEvent) => void>();
  private running: Promise<ReplayReport> | undefined;
  private again: Promise<ReplayReport> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private backoffMs = 0;
  /** After `close()` nothing more is sent: no timer is armed, no replay starts or goes on. */
  private closed = false;
  private pending = 0;
  /** URLs behind a conflict and how many pending writes wait behind them (from the last replay). */
  private blockedUrls = new Set<string>();
  private blockedPending = 0;
  private ready: Promise<void>;

  constructor(
    private readonly db: Promise<Db | null>,
    private readonly send: Sender,
  ) {
    this.ready = db.then(async (d) => {
      if (!d) return;
      const all = await d.getAll("outbox");
      this.pending = all.filter((r) => r.state === "pending").length;
      if (this.pending > 0) this.retryLater(); // kept by an earlier page
    });
  }

  /** Whether IndexedDB is there to keep writes. */
  async available(): Promise<boolean> {
    return (await this.db) !== null;
  }

  /** Items waiting for replay (known without reading IndexedDB). */
  get pendingCount(): number {
    return this.pending;
  }

  async whenReady(): Promise<void> {
    await this.ready;
  }

  /** Every item in the outbox (pending, conflicts, failures), oldest first. */
  async count(): Promise<number> {
    const db = await this.db;
    return db ? db.count("outbox") : 0;
  }

  async list(): Promise<OutboxItem[]> {
    const db = await this.db;
    if (!db) return [];
    return (await db.getAll("outbox")).map(view);
  }

  /** Remove one item without sending it. */
  async discard(id: string): Promise<boolean> {
    const db = await this.db;
    if (!db) return false;
    const record = await db.getFromIndex("outbox", "byId", id);
    if (!record || record.seq === undefined) return false;
    await db.delete("outbox", record.seq);
    if (record.state === "pending") this.pending -= 1;
    this.blockedPending = Math.min(this.blockedPending, this.pending);
    if (record.state === "conflict") {
      // what waited behind this conflict may go now
      this.blockedUrls.delete(record.url);
      this.blockedPending = 0;
      this.kick();
    }
    this.emit({ type: "discarded", item: view(record), count: await db.count("outbox") });
    return true;
  }

  subscribe(listener: (event: OutboxEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Keep a write; returns its id. Requires IndexedDB (check `available()`). */
  async enqueue(write: {
    method: string;
    url: string;
    path: string;
    headers: StoredHeaders;
    body: string | null;
    idempotencyKey: string;
    now: number;
  }): Promise<OutboxItem> {
    await this.ready;
    const db = await this.db;
    if (!db) throw new Error("IndexedDB is not available: the outbox cannot keep writes");
    const tx = db.transaction("outbox", "readwrite");
    let chained = false;
    if ("if-match" in write.headers) {
      for (let c = await tx.store.openCursor(); c; c = await c.continue()) {
        if (c.value.url === write.url && c.value.state === "pending") chained = true;
      }
    }
    const record: OutboxRecord = {
      id: uuid(),
      method: write.method,
      url: write.url,
      path: write.path,
      headers: write.headers,
      body: write.body,
      idempotencyKey: write.idempotencyKey,
      chained,
      createdAt: write.now,
      attempts: 0,
      state: "pending",
    };
    record.seq = await tx.store.add(record);
    await tx.done;
    this.pending += 1;
    this.emit({ type: "queued", item: view(record), count: await db.count("outbox") });
    return view(record);
  }

  /** Replay pending items now; called during a replay, it runs once more after that one. */
  replay(): Promise<ReplayReport> {
    if (this.running) return (this.again ??= this.running.then(() => this.replay()));
    this.running = this.run().finally(() => {
      this.running = undefined;
      this.again = undefined;
    });
    return this.running;
  }

  /** Replay if anything waits and no replay is running (after a success, on `online`). */
  kick(): void {
    if (this.pending - this.blockedPending > 0 && !this.running) void this.replay();
  }

  /**
   * Must a new write to `url` wait in the outbox behind writes kept before it? Yes while any
   * write that can be replayed waits, or while this URL is held behind a conflict.
   */
  mustQueue(url: string): boolean {
    return this.pending - this.blockedPending > 0 || this.running !== undefined || this.blockedUrls.has(url);
  }

  /** Try again later (after a write was kept because Loupe was unreachable). */
  retryLater(): void {
    if (!this.timer) this.schedule(undefined);
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }

  private async run(): Promise<ReplayReport> {
    await this.ready;
    const db = await this.db;
    const report: ReplayReport = { replayed: 0, conflicts: 0, failed: 0, remaining: 0 };
    if (!db) return report;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const blocked = new Set<string>(); // URLs behind a conflict: their writes wait
    let after = 0;
    let skipped = 0;
    for (;;) {
      if (this.closed) break; // what is left waits in IndexedDB for the next page's client
      const range = IDBKeyRange.lowerBound(after, true);
      const record = (await db.getAll("outbox", range, 1))[0];
      if (!record || record.seq === undefined) break;
      after = record.seq;
      if (record.state === "conflict") blocked.add(record.url);
      if (record.state !== "pending") continue;
      if (blocked.has(record.url)) {
        skipped += 1;
        continue;
      }

      record.attempts += 1;
      const result = await this.send(record);
      if ("error" in result || result.circuitOpen) {
        await db.put("outbox", record);
        report.stopped = "unreachable";
        this.schedule(undefined);
        break;
      }
      const response = result.response;
      const status = response.status;
      if (status < 400) {
        await db.delete("outbox", record.seq);
        this.pending -= 1;
        report.replayed += 1;
        this.backoffMs = 0;
        const etag = response.headers.get("ETag");
        if (etag) await this.chainEtag(db, record, etag);
        this.emit({
          type: "replayed",
          item: view(record),
          status,
          etag,
          body: await readJson(response),
          count: await db.count("outbox"),
        });
        continue;
      }
      // A 409 is read first: only the one saying the first request with this key is still
      // running (IN_FLIGHT_PROBLEM) is sent again; any other 409 is a conflict to show.
      const conflictProblem = status === 409 ? await LoupeProblem.fromResponse(response) : undefined;
      const busy = status === 429 || status >= 500 || conflictProblem?.type === IN_FLIGHT_PROBLEM;
      if (busy) {
        await db.put("outbox", record);
        report.stopped = "busy";
        this.schedule(parseRetryAfter(response.headers.get("Retry-After"), Date.now()));
        if (!conflictProblem) await response.body?.cancel();
        break;
      }
      const problem = conflictProblem ?? (await LoupeProblem.fromResponse(response));
      const conflict = status === 412 || status === 409;
      record.state = conflict ? "conflict" : "failed";
      record.problem = {
        status: problem.status,
        title: problem.title,
        detail: problem.detail,
        requestId: problem.requestId,
      };
      await db.put("outbox", record);
      this.pending -= 1;
      if (conflict) {
        blocked.add(record.url);
        report.conflicts += 1;
      } else {
        report.failed += 1;
      }
      this.emit({ type: conflict ? "conflict" : "failed", item: view(record), problem, count: await db.count("outbox") });
    }
    if (!report.stopped) {
      this.blockedUrls = blocked;
      this.blockedPending = skipped;
    }
    report.remaining = await db.count("outbox");
    return report;
  }

  /** The next queued write to the same URL that was chained to this one takes its ETag. */
  private async chainEtag(db: Db, done: OutboxRecord, etag: string): Promise<void> {
    const tx = db.transaction("outbox", "readwrite");
    const range = IDBKeyRange.lowerBound(done.seq ?? 0, true);
    for (let c = await tx.store.openCursor(range); c; c = await c.continue()) {
      if (c.value.url !== done.url) continue;
      if (c.value.chained && c.value.state === "pending") {
        await c.update({ ...c.value, headers: { ...c.value.headers, "if-match": etag } });
      }
      break;
    }
    await tx.done;
  }

  private schedule(retryAfterMs: number | undefined): void {
    if (this.closed) return;
    this.backoffMs = Math.min(60_000, Math.max(1000, this.backoffMs * 2));
    const delay = retryAfterMs ?? Math.floor(this.backoffMs / 2 + (Math.random() * this.backoffMs) / 2);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.kick();
    }, delay);
    (this.timer as { unref?: () => void }).unref?.();
  }

  private emit(event: OutboxEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // a listener's error is its own
      }
    }
  }
}

function view(record: OutboxRecord): OutboxItem {
  let body: unknown = record.body;
  if (record.body !== null) {
    try {
      body = JSON.parse(record.body);
    } catch {
      // kept as text
    }
  }
  return {
    id: record.id,
    method: record.method,
    url: record.url,
    path: record.path,
    idempotencyKey: record.idempotencyKey,
    createdAt: record.createdAt,
    attempts: record.attempts,
    state: record.state,
    chained: record.chained,
    body,
    ...(record.problem ? { problem: record.problem } : {}),
  };
}

async function readJson(response: Response): Promise<unknown> {
  const text = await response.text().catch(() => "");
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
