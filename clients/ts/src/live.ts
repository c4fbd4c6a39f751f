// Live results over a fetch stream (an EventSource cannot send the bearer token): reconnects
// with backoff, resumes with Last-Event-ID and fills every gap (a reconnect, `event: dropped`,
// `event: gap`) from the paged list, one bounded time window at a time.
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { LoupeProblem, parseRetryAfter } from "./problem.js";
import type { components } from "./schema/catalog.js";
import { CACHE_CONTROL_HEADER, type Transport } from "./transport.js";

export type StoredResult = components["schemas"]["StoredResult"];

export interface ResultFilter {
  line_id?: string;
  verdict?: "pass" | "fail" | "error";
}

export type LiveStatus = "connecting" | "live" | "reconnecting" | "closed";

/** One gap read from the paged list: the window, the results read and those new to the reader. */
export interface GapFill {
  since: string;
  /** Absent when the window ran up to the time of reading. */
  until?: string;
  read: number;
  delivered: number;
  /** False when `gapMaxPages` cut the window short: its oldest results were not read. */
  complete: boolean;
}

export interface SubscribeOptions {
  /** `event: dropped`: the server skipped `count` results for this slow reader (then a gap fill runs). */
  onDropped?: (count: number) => void;
  /** Each gap fill once it is done. */
  onGapFill?: (fill: GapFill) => void;
  onStatus?: (status: LiveStatus) => void;
  /** Errors while connected or reconnecting; a final one (401, 403, 404, 422) ends the subscription. */
  onError?: (error: LoupeProblem) => void;
  /** Resume after this result id (as sent in `id:`) from the first connection on. */
  lastEventId?: string;
  /** Backfill results captured since this time (RFC 3339) on the first connection. */
  since?: string;
  /** How far a gap's window reaches beyond the results on either side of it, in ms (default 2 000):
   * results reach the feed in the order they are recorded, not quite in `captured_at` order. */
  gapMarginMs?: number;
  /** Pages of 1 000 a gap fill reads at most (default 50). */
  gapMaxPages?: number;
  /** Reconnect backoff (full jitter): base and cap in ms (defaults 1 000 and 30 000). */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** No byte for this long (keep-alives come every 15 s) means the connection is dead (default 45 000). */
  idleTimeoutMs?: number;
  signal?: AbortSignal;
}

const FATAL = new Set([400, 401, 403, 404, 405, 422]);
const PAGE = 1000;
/** Ids remembered at most, whatever the window: bounds the memory of a reader that never catches up. */
const SEEN_LIMIT = 200_000;
/** An open gap with no result after it is read up to the present after this long. */
const GAP_CLOSE_MS = 2000;
/** The feed runs ahead of the database (it hears results as lines publish them): how long a
 * gap fill waits at most for the result that ended the gap to be stored. */
const STORED_WAIT_MS = 30_000;

interface Window {
  since: number;
  until?: number;
  /** The result that ended the gap: once it is stored, so is what the stream skipped before it. */
  marker?: string;
}

/** The ids delivered lately with their capture time, oldest arrival first; forgotten once
 * older than any window still to be read. O(1) per result. */
class RecentIds {
  private readonly ids = new Map<string, number>();

  has(id: string): boolean {
    return this.ids.has(id);
  }

  add(id: string, capturedMs: number): void {
    this.ids.set(id, capturedMs);
    if (this.ids.size > SEEN_LIMIT) this.ids.delete(this.ids.keys().next().value as string);
  }

  forgetBefore(horizonMs: number): void {
    for (const [id, at] of this.ids) {
      if (at >= horizonMs) break;
      this.ids.delete(id);
    }
  }
}

export function subscribeResults(
  transport: Transport,
  filter: ResultFilter,
  onResult: (result: StoredResult) => void,
  options: SubscribeOptions = {},
): () => void {
  const stop = new AbortController();
  if (options.signal?.aborted) stop.abort();
  options.signal?.addEventListener("abort", () => stop.abort(), { once: true });
  const seen = new RecentIds();
  let lastId = options.lastEventId;
  // The newest capture time delivered by the stream itself: where a gap in the stream starts.
  let streamAt: number | undefined;
  let baseMs = options.backoffBaseMs ?? 1000;
  const capMs = options.backoffCapMs ?? 30_000;
  const idleMs = options.idleTimeoutMs ?? 45_000;
  const margin = options.gapMarginMs ?? 2000;
  const maxPages = options.gapMaxPages ?? 50;

  const deliver = (result: StoredResult, capturedMs: number): boolean => {
    if (seen.has(result.result_id)) return false;
    seen.add(result.result_id, capturedMs);
    try {
      onResult(result);
    } catch {
      // the caller's error is its own
    }
    return true;
  };

  const query = (extra: Record<string, string>): string => {
    const params = new URLSearchParams();
    if (filter.line_id) params.set("line_id", filter.line_id);
    if (filter.verdict) params.set("verdict", filter.verdict);
    for (const [k, v] of Object.entries(extra)) params.set(k, v);
    const text = params.toString();
    return text ? `?${text}` : "";
  };

  const status = (s: LiveStatus): void => options.onStatus?.(s);
  const report = (error: unknown): void => {
    if (stop.signal.aborted) return;
    const problem =
      error instanceof LoupeProblem
        ? error
        : new LoupeProblem({ status: 0, title: "Network Error", detail: String(error) }, { cause: error });
    options.onError?.(problem);
  };

  // Gaps: one may be open (its start known, waiting for the next result to end it); closed
  // windows wait in a queue, read one at a time by a single worker, overlapping ones merged.
  let openGap: number | undefined;
  let openTimer: ReturnType<typeof setTimeout> | undefined;
  const queue: Window[] = [];
  let filling: Promise<void> | undefined;
  let reading: Window | undefined;

  /** Ids captured before this cannot come again: no window still to be read reaches them. */
  const horizon = (): number | undefined => {
    const starts = [openGap, reading?.since, ...queue.map((w) => w.since), before(streamAt)].filter(
      (t): t is number => t !== undefined,
    );
    return starts.length ? Math.min(...starts) - margin : undefined;
  };

  const fill = async (window: Window): Promise<void> => {
    const since = new Date(window.since).toISOString();
    const until = window.until === undefined ? undefined : new Date(window.until).toISOString();
    let cursor: string | null = null;
    let read = 0;
    let delivered = 0;
    let pages = 0;
    do {
      const extra: Record<string, string> = { since, limit: String(PAGE) };
      if (until) extra["until"] = until;
      if (cursor) extra["cursor"] = cursor;
      const response = await transport.fetch(`${transport.baseUrl}/api/results${query(extra)}`, {
        headers: { Accept: "application/json", [CACHE_CONTROL_HEADER]: "no-store" },
        signal: stop.signal,
      });
      if (!response.ok) throw await LoupeProblem.fromResponse(response);
      const body = (await response.json()) as { items: StoredResult[]; next_cursor: string | null };
      read += body.items.length;
      // a page is newest first; deliver it oldest first
      for (let i = body.items.length - 1; i >= 0; i -= 1) {
        const result = body.items[i] as StoredResult;
        if (deliver(result, Date.parse(result.captured_at))) delivered += 1;
      }
      cursor = body.next_cursor;
      pages += 1;
    } while (cursor && pages < maxPages);
    options.onGapFill?.({ since, ...(until ? { until } : {}), read, delivered, complete: !cursor });
  };

  /** Waits (with growing pauses) until result `id` can be read from the list's store. */
  const stored = async (id: string): Promise<void> => {
    let waited = 0;
    for (let pause = 100; waited < STORED_WAIT_MS; pause = Math.min(pause * 2, 2000)) {
      const response = await transport.fetch(`${transport.baseUrl}/api/results/${encodeURIComponent(id)}`, {
        headers: { Accept: "application/json", [CACHE_CONTROL_HEADER]: "no-store" },
        signal: stop.signal,
      });
      if (response.ok || response.status !== 404) return;
      await transport.clock.sleep(pause, stop.signal);
      waited += pause;
    }
  };

  const work = async (): Promise<void> => {
    while (queue.length && !stop.signal.aborted) {
      reading = queue.shift() as Window;
      if (reading.marker) await stored(reading.marker).catch(report);
      await fill(reading).catch(report);
      reading = undefined;
      const h = horizon();
      if (h !== undefined) seen.forgetBefore(h);
    }
    filling = undefined;
  };

  const enqueue = (window: Window): void => {
    const last = queue[queue.length - 1];
    if (last && (last.until === undefined || window.since <= last.until)) {
      last.since = Math.min(last.since, window.since);
      if (last.until === undefined || window.until === undefined) {
        delete last.until;
        delete last.marker;
      } else if (window.until > last.until) {
        last.until = window.until;
        if (window.marker) last.marker = window.marker;
      }
    } else {
      queue.push(window);
    }
    filling ??= work();
  };

  /** A gap's window starts at `start` (a capture time); the next result the stream delivers ends it. */
  const openAt = (start: number | undefined): void => {
    if (start === undefined) return;
    openGap = openGap === undefined ? start : Math.min(openGap, start);
    if (openTimer) clearTimeout(openTimer);
    openTimer = setTimeout(() => closeGap(), GAP_CLOSE_MS);
  };

  const closeGap = (end?: { at: number; id: string }): void => {
    if (openTimer) clearTimeout(openTimer);
    openTimer = undefined;
    if (openGap === undefined) return;
    enqueue({ since: openGap, ...(end === undefined ? {} : { until: end.at + margin, marker: end.id }) });
    openGap = undefined;
  };

  const before = (at: number | undefined): number | undefined => (at === undefined ? undefined : at - margin);

  let sincePruned = 0;
  const onStreamResult = (result: StoredResult): void => {
    const capturedMs = Date.parse(result.captured_at);
    if (openGap !== undefined) closeGap({ at: capturedMs, id: result.result_id });
    if (streamAt === undefined || capturedMs > streamAt) streamAt = capturedMs;
    deliver(result, capturedMs);
    sincePruned += 1;
    if (sincePruned >= PAGE) {
      sincePruned = 0;
      const h = horizon();
      if (h !== undefined) seen.forgetBefore(h);
    }
  };

  const connectOnce = async (first: boolean): Promise<{ retryAfterMs?: number; fatal?: boolean; received: boolean }> => {
    const connection = new AbortController();
    const abort = (): void => connection.abort();
    stop.signal.addEventListener("abort", abort, { once: true });
    let idle: ReturnType<typeof setTimeout> | undefined;
    const arm = (): void => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(abort, idleMs);
    };
    let received = false;
    try {
      const headers = new Headers({ Accept: "text/event-stream" });
      if (lastId) headers.set("Last-Event-ID", lastId);
      await transport.authorize(headers);
      arm();
      const response = await transport.raw(`${transport.baseUrl}/api/results/stream${query({})}`, {
        headers,
        signal: connection.signal,
      });
      if (!response.ok || !response.body) {
        const problem = await LoupeProblem.fromResponse(response);
        report(problem);
        return { fatal: FATAL.has(response.status), received, ...retryAfter(response) };
      }
      // What came before this connection: from `since` on the first, from the last result seen
      // on a reconnect (the server's replay after Last-Event-ID makes most of it a duplicate).
      openAt(first ? (options.since ? Date.parse(options.since) : undefined) : before(streamAt));
      status("live");
      const parser = createParser({
        onEvent(message: EventSourceMessage) {
          received = true;
          if (message.event === "result") {
            if (message.id) lastId = message.id;
            let result: StoredResult;
            try {
              result = JSON.parse(message.data) as StoredResult;
            } catch (error) {
              report(error);
              return;
            }
            onStreamResult(result);
          } else if (message.event === "dropped") {
            options.onDropped?.(Number(field(message.data, "count", 0)));
            openAt(before(streamAt));
          } else if (message.event === "gap") {
            // the replay after Last-Event-ID held only part of what was missed
            const after = field<string | undefined>(message.data, "after", undefined);
            openAt(before(after ? Date.parse(after) : streamAt));
          }
        },
        onComment() {
          received = true;
        },
        onRetry(ms: number) {
          baseMs = Math.max(100, ms);
        },
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        arm();
        parser.feed(value);
      }
      return { received };
    } catch (error) {
      if (!stop.signal.aborted) report(error);
      return { received };
    } finally {
      if (idle) clearTimeout(idle);
      stop.signal.removeEventListener("abort", abort);
      // A gap still open when the connection ends is read up to now, before any reconnect.
      if (!stop.signal.aborted) closeGap();
      await filling;
    }
  };

  void (async () => {
    let failures = 0;
    let first = true;
    while (!stop.signal.aborted) {
      status(first ? "connecting" : "reconnecting");
      const outcome = await connectOnce(first);
      first = false;
      if (stop.signal.aborted) break;
      if (outcome.fatal) {
        stop.abort();
        break;
      }
      failures = outcome.received ? 1 : failures + 1;
      const ceiling = Math.min(capMs, baseMs * 2 ** (failures - 1));
      const wait = outcome.retryAfterMs ?? Math.floor(Math.random() * ceiling);
      await transport.clock.sleep(wait, stop.signal).catch(() => undefined);
    }
    if (openTimer) clearTimeout(openTimer);
    status("closed");
  })();

  return () => stop.abort();
}

function field<T>(data: string, name: string, fallback: T): T {
  try {
    const value = (JSON.parse(data) as Record<string, unknown>)[name];
    return value === undefined || value === null ? fallback : (value as T);
  } catch {
    return fallback;
  }
}

function retryAfter(response: Response): { retryAfterMs?: number } {
  const ms = parseRetryAfter(response.headers.get("Retry-After"), Date.now());
  return ms === undefined ? {} : { retryAfterMs: ms };
}
