// The fetch every typed call goes through: auth, Idempotency-Key, circuit breaker, retry,
// in-flight GET deduplication, the JSON cache, the outbox and the stats.
import { CircuitBreaker, type BreakerOptions, type BreakerState } from "./breaker.js";
import { JsonCache, cachedResponse, isJson, type CacheOptions } from "./cache.js";
import { systemClock, type Clock } from "./clock.js";
import { openLoupeDb, type Db, type OutboxRecord, type StoredHeaders } from "./db.js";
import { uuid } from "./ids.js";
import { Outbox, type SendResult } from "./outbox.js";
import { LoupeProblem, problemResponse } from "./problem.js";
import { SAFE_METHODS, mayRetryMethod, nextDelay, retryPolicy, type RetryOptions, type RetryPolicy } from "./retry.js";
import { SERVICE_NAMES, apiPath, serviceOf, type ServiceName } from "./services.js";
import { StatsRecorder, type Outcome } from "./stats.js";

/** Header on the answer to a write kept in the outbox: the outbox item's id. */
export const QUEUED_HEADER = "X-Loupe-Queued";
/** Header on the client's own 503 while a service's circuit is open. */
export const CIRCUIT_HEADER = "X-Loupe-Circuit";
/**
 * Per-call controls, as request headers the client reads and removes before sending:
 * `X-Loupe-Cache: no-cache` (revalidate, skip the TTL) or `no-store` (bypass the cache);
 * `X-Loupe-Queue: never` (a write that must not be kept in the outbox).
 */
export const CACHE_CONTROL_HEADER = "X-Loupe-Cache";
export const QUEUE_CONTROL_HEADER = "X-Loupe-Queue";

export type TokenSource = () => string | null | undefined | Promise<string | null | undefined>;

export interface TransportOptions {
  /** Origin (and optional path) of the gateway; defaults to the page's origin. */
  baseUrl?: string;
  /** A bearer token, or a function answering the current one (called for every request). */
  token?: string;
  getToken?: TokenSource;
  /** The fetch underneath (default: globalThis.fetch, looked up on each call). */
  fetch?: (input: Request | string | URL, init?: RequestInit) => Promise<Response>;
  clock?: Clock;
  /** `false` turns retries off. */
  retry?: RetryOptions | false;
  /** `false` turns the circuit breakers off. */
  breaker?: BreakerOptions | false;
  /** `false` turns the JSON cache (and the stale fallback) off. */
  cache?: CacheOptions | false;
  /** In-flight GET deduplication (default true). */
  dedupe?: boolean;
  /** `false` turns the outbox off: writes that cannot reach Loupe throw instead. */
  outbox?: boolean;
  /** IndexedDB database of the outbox and the kept answers (default `loupe-client`). */
  dbName?: string;
  onBreakerChange?: (service: ServiceName, state: BreakerState) => void;
}

type Attempt = { response: Response; circuitOpen?: boolean } | { error: unknown };
interface Handled {
  response: Response;
  outcome: Outcome;
  cacheable?: boolean;
}

const BINARY_PATH = /^\/api\/(images\/[^/]+(\/thumbnail)?|backups\/[^/]+\/archive)$/;
const STREAM_PATH = "/api/results/stream";

export class Transport {
  readonly baseUrl: string;
  readonly stats = new StatsRecorder();
  readonly cache: JsonCache | undefined;
  readonly outbox: Outbox | undefined;
  readonly breakers = new Map<ServiceName, CircuitBreaker>();
  readonly clock: Clock;
  private readonly policy: RetryPolicy | undefined;
  private readonly inflight = new Map<string, Promise<Handled>>();
  private readonly dedupe: boolean;

  constructor(private readonly options: TransportOptions = {}) {
    this.baseUrl = (options.baseUrl ?? globalThis.location?.origin ?? "").replace(/\/+$/, "");
    this.clock = options.clock ?? systemClock;
    this.policy = options.retry === false ? undefined : retryPolicy(options.retry);
    this.dedupe = options.dedupe ?? true;
    const dbName = options.dbName ?? "loupe-client";
    const needsDb = options.outbox !== false || options.cache !== false;
    const db: Promise<Db | null> =
      needsDb && typeof indexedDB !== "undefined"
        ? openLoupeDb(dbName).catch(() => null)
        : Promise.resolve(null);
    if (options.cache !== false) this.cache = new JsonCache(options.cache ?? {}, db);
    if (options.outbox !== false) this.outbox = new Outbox(db, (record) => this.replaySend(record));
    if (options.breaker !== false) {
      for (const name of SERVICE_NAMES) {
        this.breakers.set(
          name,
          new CircuitBreaker(this.clock, options.breaker || {}, (state) => options.onBreakerChange?.(name, state)),
        );
      }
    }
  }

  /** A `fetch` with everything above; what the typed clients call. */
  readonly fetch = async (input: Request | string | URL, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request && init === undefined ? input : new Request(input, init);
    const started = this.clock.now();
    const path = apiPath(request.url, this.baseUrl);
    const service = serviceOf(path) ?? "other";
    const headers = new Headers(request.headers);
    const cacheControl = headers.get(CACHE_CONTROL_HEADER);
    const queueControl = headers.get(QUEUE_CONTROL_HEADER);
    headers.delete(CACHE_CONTROL_HEADER);
    headers.delete(QUEUE_CONTROL_HEADER);
    await this.authorize(headers);
    const method = request.method.toUpperCase();
    if (path === STREAM_PATH || (headers.get("Accept") ?? "").includes("text/event-stream")) {
      return this.raw(request.url, { method, headers, signal: request.signal });
    }
    let handled: Handled;
    try {
      handled = SAFE_METHODS.has(method)
        ? await this.read(request, method, headers, path, service, cacheControl)
        : await this.write(request, method, headers, path, service, queueControl);
    } catch (error) {
      this.stats.record({ service, latencyMs: this.clock.now() - started, outcome: "failed", status: 0, cacheable: false });
      throw error;
    }
    const { response, outcome } = handled;
    const status = outcome === "queued" ? 0 : response.status;
    this.stats.record({
      service,
      latencyMs: this.clock.now() - started,
      outcome: response.headers.has(CIRCUIT_HEADER) && outcome === "network" ? "failed" : outcome,
      status,
      cacheable: handled.cacheable ?? false,
    });
    if (outcome === "network" && response.status < 500 && !response.headers.has(CIRCUIT_HEADER)) {
      this.outbox?.kick();
    }
    return response;
  };

  /** Send without cache, breaker or retry (the live results stream). */
  raw(url: string, init: RequestInit): Promise<Response> {
    const fetchImpl = this.options.fetch ?? globalThis.fetch;
    return fetchImpl(url, init);
  }

  async authorize(headers: Headers): Promise<void> {
    if (headers.has("Authorization")) return;
    const token = this.options.getToken ? await this.options.getToken() : this.options.token;
    if (token) headers.set("Authorization", `Bearer ${token}`);
  }

  breakerStates(): Record<ServiceName, BreakerState> {
    const states = {} as Record<ServiceName, BreakerState>;
    for (const [name, breaker] of this.breakers) states[name] = breaker.state;
    return states;
  }

  private async read(
    request: Request,
    method: string,
    headers: Headers,
    path: string,
    service: ServiceName | "other",
    control: string | null,
  ): Promise<Handled> {
    const cache = this.cache;
    // A read that waits for what is new (`GET /api/results?wait=`) is never answered from, or
    // kept in, the cache: a kept empty page would answer the follower's next ask at once.
    const waits = new URL(request.url).searchParams.has("wait");
    const cacheable =
      method === "GET" && cache !== undefined && control !== "no-store" && !BINARY_PATH.test(path) && !waits;
    const key = `${request.url} ${headers.get("Accept") ?? ""}`;
    const entry = cacheable ? await cache.get(key) : undefined;
    if (entry && control !== "no-cache") {
      const ttl = cache!.ttlFor(path);
      if (ttl > 0 && this.clock.now() - entry.storedAt < ttl) {
        return { response: cachedResponse(entry, "ttl"), outcome: "ttl-hit", cacheable };
      }
    }
    const dedupKey = this.dedupe ? `${method} ${request.url} ${headerKey(headers)} ${control ?? ""}` : undefined;
    const joined = dedupKey === undefined ? undefined : this.inflight.get(dedupKey);
    if (joined) {
      this.stats.deduplicated(service);
      const shared = await joined;
      return { ...shared, response: shared.response.clone() };
    }
    const fresh = (async (): Promise<Handled> => {
      const etag = entry?.etag;
      const conditional = etag && !headers.has("If-None-Match");
      if (conditional) headers.set("If-None-Match", etag);
      const attempt = await this.attempt(request, method, headers, null, service);
      const now = this.clock.now();
      if ("error" in attempt) {
        if (entry) return { response: cachedResponse(entry, "stale"), outcome: "stale", cacheable };
        throw networkProblem(attempt.error, request);
      }
      const response = attempt.response;
      if (entry && conditional && response.status === 304) {
        cache!.touch(entry, now);
        return { response: cachedResponse(entry, "revalidated"), outcome: "not-modified", cacheable };
      }
      if (entry && (attempt.circuitOpen || [502, 503, 504].includes(response.status))) {
        await response.body?.cancel();
        return { response: cachedResponse(entry, "stale"), outcome: "stale", cacheable };
      }
      if (cacheable && response.status === 200 && isJson(response)) await cache!.put(key, path, response, now);
      return { response, outcome: "network", cacheable };
    })();
    if (dedupKey === undefined) return fresh;
    this.inflight.set(dedupKey, fresh);
    try {
      const shared = await fresh;
      return { ...shared, response: shared.response.clone() };
    } finally {
      this.inflight.delete(dedupKey);
    }
  }

  private async write(
    request: Request,
    method: string,
    headers: Headers,
    path: string,
    service: ServiceName | "other",
    control: string | null,
  ): Promise<Handled> {
    if (path.startsWith("/api/") && !headers.has("Idempotency-Key")) headers.set("Idempotency-Key", uuid());
    const body = request.body === null ? null : await request.arrayBuffer();
    const type = headers.get("Content-Type") ?? "";
    const json = body === null || body.byteLength === 0 || /^application\/(.+\+)?json\b/i.test(type);
    const queueable = this.outbox !== undefined && control !== "never" && path.startsWith("/api/") && json;
    const keep = async (): Promise<Handled | undefined> => {
      if (!queueable || !(await this.outbox!.available())) return undefined;
      const item = await this.outbox!.enqueue({
        method,
        url: request.url,
        path,
        headers: storedHeaders(headers),
        body: body === null ? null : new TextDecoder().decode(body),
        idempotencyKey: headers.get("Idempotency-Key") ?? uuid(),
        now: this.clock.now(),
      });
      return { response: queuedResponse(item.id), outcome: "queued" };
    };
    if (queueable) {
      await this.outbox!.whenReady();
      if (this.outbox!.mustQueue(request.url)) {
        const kept = await keep();
        if (kept) {
          this.outbox!.retryLater();
          return kept;
        }
      }
    }
    const attempt = await this.attempt(request, method, headers, body, service);
    if ("error" in attempt || attempt.circuitOpen) {
      const kept = await keep();
      if (kept) {
        this.outbox!.retryLater();
        return kept;
      }
      if ("error" in attempt) throw networkProblem(attempt.error, request);
      return { response: attempt.response, outcome: "failed" };
    }
    if (attempt.response.ok && this.cache) await this.cache.invalidate(resourcePrefix(path));
    return { response: attempt.response, outcome: "network" };
  }

  /** Send with the circuit breaker and the retry rules. */
  private async attempt(
    request: Request,
    method: string,
    headers: Headers,
    body: ArrayBuffer | string | null,
    service: ServiceName | "other",
  ): Promise<Attempt> {
    const breaker = service === "other" ? undefined : this.breakers.get(service);
    const retry = this.policy !== undefined && mayRetryMethod(method, headers);
    for (let n = 1; ; n += 1) {
      if (breaker && !breaker.tryPass()) {
        return { response: circuitOpenResponse(service, breaker.retryInMs), circuitOpen: true };
      }
      let response: Response | undefined;
      let error: unknown;
      try {
        response = await this.raw(request.url, {
          method,
          headers,
          body,
          signal: request.signal,
          credentials: request.credentials,
          redirect: request.redirect,
        });
      } catch (caught) {
        if (request.signal.aborted) throw caught;
        error = caught;
      }
      if (response === undefined || response.status >= 500) breaker?.failure();
      else breaker?.success();
      const delay = retry ? nextDelay(n, response, this.policy!, Date.now()) : undefined;
      if (delay === undefined) return response ? { response } : { error };
      this.stats.retry(service);
      await response?.body?.cancel().catch(() => undefined);
      await this.clock.sleep(delay, request.signal);
    }
  }

  /** Send one write from the outbox (its stored headers and key, today's token). */
  private async replaySend(record: OutboxRecord): Promise<SendResult> {
    const headers = new Headers(record.headers);
    headers.set("Idempotency-Key", record.idempotencyKey);
    await this.authorize(headers);
    const started = this.clock.now();
    const service = serviceOf(record.path) ?? "other";
    const request = new Request(record.url, { method: record.method });
    const attempt = await this.attempt(request, record.method, headers, record.body, service);
    const status = "error" in attempt ? 0 : attempt.response.status;
    const outcome: Outcome = "error" in attempt || attempt.circuitOpen ? "failed" : "network";
    this.stats.record({ service, latencyMs: this.clock.now() - started, outcome, status, cacheable: false });
    if (!("error" in attempt) && attempt.response.ok && this.cache) await this.cache.invalidate(resourcePrefix(record.path));
    return attempt;
  }
}

/** `/api/programs/…` → `/api/programs`: what a write may have changed. */
function resourcePrefix(path: string): string {
  const parts = path.split("/");
  return parts.slice(0, 3).join("/");
}

function headerKey(headers: Headers): string {
  return [...headers.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}:${v}`)
    .join("\n");
}

function storedHeaders(headers: Headers): StoredHeaders {
  const kept: StoredHeaders = {};
  for (const [name, value] of headers.entries()) {
    if (name !== "authorization") kept[name] = value;
  }
  return kept;
}

function queuedResponse(id: string): Response {
  return new Response(JSON.stringify({ queued: true, id }), {
    status: 202,
    headers: { "Content-Type": "application/json", [QUEUED_HEADER]: id },
  });
}

function circuitOpenResponse(service: string, retryInMs: number): Response {
  const seconds = Math.max(1, Math.ceil(retryInMs / 1000));
  return problemResponse(
    {
      status: 503,
      title: "Service Unavailable",
      detail: `The circuit for the ${service} service is open after repeated failures; the client tries again in ${seconds} s.`,
    },
    { [CIRCUIT_HEADER]: "open", "Retry-After": String(seconds) },
  );
}

function networkProblem(error: unknown, request: Request): LoupeProblem {
  const message = error instanceof Error ? error.message : String(error);
  return new LoupeProblem(
    {
      status: 0,
      title: "Network Error",
      detail: `Loupe could not be reached (${request.method} ${new URL(request.url).pathname}): ${message}`,
    },
    { cause: error },
  );
}
