// Live results over a fetch stream (an EventSource cannot send the bearer token): reconnects
// with backoff, resumes with Last-Event-ID and fills any remaining gap from the paged list.
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

export interface SubscribeOptions {
  /** `event: dropped`: the server skipped `count` results for this slow reader (then a gap fill runs). */
  onDropped?: (count: number) => void;
  onStatus?: (status: LiveStatus) => void;
  /** Errors while connected or reconnecting; a final one (401, 403, 404, 422) ends the subscription. */
  onError?: (error: LoupeProblem) => void;
  /** Resume after this result id (as sent in `id:`) from the first connection on. */
  lastEventId?: string;
  /** Backfill results captured since this time (RFC 3339) on the first connection. */
  since?: string;
  /** How far before the last seen `captured_at` a gap fill starts, in ms (default 5 000). */
  gapMarginMs?: number;
  /** Pages of 1 000 a gap fill reads at most (default 10). */
  gapMaxPages?: number;
  /** Reconnect backoff (full jitter): base and cap in ms (defaults 1 000 and 30 000). */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** No byte for this long (keep-alives come every 15 s) means the connection is dead (default 45 000). */
  idleTimeoutMs?: number;
  signal?: AbortSignal;
}

const FATAL = new Set([400, 401, 403, 404, 405, 422]);
const SEEN_LIMIT = 10_000;

export function subscribeResults(
  transport: Transport,
  filter: ResultFilter,
  onResult: (result: StoredResult) => void,
  options: SubscribeOptions = {},
): () => void {
  const stop = new AbortController();
  options.signal?.addEventListener("abort", () => stop.abort(), { once: true });
  const seen = new Set<string>();
  let lastId = options.lastEventId;
  let lastCapturedAt: string | undefined;
  let baseMs = options.backoffBaseMs ?? 1000;
  const capMs = options.backoffCapMs ?? 30_000;
  const idleMs = options.idleTimeoutMs ?? 45_000;
  const margin = options.gapMarginMs ?? 5000;

  const deliver = (result: StoredResult): void => {
    if (seen.has(result.result_id)) return;
    seen.add(result.result_id);
    if (seen.size > SEEN_LIMIT) seen.delete(seen.values().next().value as string);
    if (!lastCapturedAt || Date.parse(result.captured_at) > Date.parse(lastCapturedAt)) {
      lastCapturedAt = result.captured_at;
    }
    try {
      onResult(result);
    } catch {
      // the caller's error is its own
    }
  };

  const query = (extra: Record<string, string>): string => {
    const params = new URLSearchParams();
    if (filter.line_id) params.set("line_id", filter.line_id);
    if (filter.verdict) params.set("verdict", filter.verdict);
    for (const [k, v] of Object.entries(extra)) params.set(k, v);
    const text = params.toString();
    return text ? `?${text}` : "";
  };

  const gapFill = async (since: string): Promise<void> => {
    const found: StoredResult[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < (options.gapMaxPages ?? 10); page += 1) {
      const extra: Record<string, string> = { since, limit: "1000" };
      if (cursor) extra["cursor"] = cursor;
      const response = await transport.fetch(`${transport.baseUrl}/api/results${query(extra)}`, {
        headers: { Accept: "application/json", [CACHE_CONTROL_HEADER]: "no-store" },
        signal: stop.signal,
      });
      if (!response.ok) throw await LoupeProblem.fromResponse(response);
      const body = (await response.json()) as { items: StoredResult[]; next_cursor: string | null };
      found.push(...body.items);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    // pages are newest first; deliver oldest first
    found.sort((a, b) => Date.parse(a.captured_at) - Date.parse(b.captured_at));
    for (const result of found) deliver(result);
  };

  const sinceLastSeen = (): string | undefined =>
    lastCapturedAt ? new Date(Date.parse(lastCapturedAt) - margin).toISOString() : undefined;

  const status = (s: LiveStatus): void => options.onStatus?.(s);
  const report = (error: unknown): void => {
    if (stop.signal.aborted) return;
    const problem =
      error instanceof LoupeProblem
        ? error
        : new LoupeProblem({ status: 0, title: "Network Error", detail: String(error) }, { cause: error });
    options.onError?.(problem);
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
      const backfillFrom = first ? options.since : sinceLastSeen();
      if (backfillFrom) await gapFill(backfillFrom).catch(report);
      status("live");
      let refill: Promise<void> | undefined;
      const parser = createParser({
        onEvent(message: EventSourceMessage) {
          received = true;
          if (message.event === "result") {
            if (message.id) lastId = message.id;
            try {
              deliver(JSON.parse(message.data) as StoredResult);
            } catch (error) {
              report(error);
            }
          } else if (message.event === "dropped") {
            let count = 0;
            try {
              count = Number((JSON.parse(message.data) as { count?: number }).count ?? 0);
            } catch {
              // keep 0
            }
            options.onDropped?.(count);
            const since = sinceLastSeen();
            if (since && !refill) refill = gapFill(since).catch(report).finally(() => (refill = undefined));
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
      await refill;
      return { received };
    } catch (error) {
      if (!stop.signal.aborted) report(error);
      return { received };
    } finally {
      if (idle) clearTimeout(idle);
      stop.signal.removeEventListener("abort", abort);
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
    status("closed");
  })();

  return () => stop.abort();
}

function retryAfter(response: Response): { retryAfterMs?: number } {
  const ms = parseRetryAfter(response.headers.get("Retry-After"), Date.now());
  return ms === undefined ? {} : { retryAfterMs: ms };
}
