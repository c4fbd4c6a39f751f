// What the storage dashboard shows: operations, latency percentiles, error rate, cache hit rate.
import { SERVICE_NAMES, type ServiceName } from "./services.js";

/** How one call through the client ended. */
export type Outcome =
  | "network" // answered by Loupe (any status)
  | "ttl-hit" // answered from the cache without a request (within the TTL)
  | "not-modified" // Loupe answered 304: the cached answer was used
  | "stale" // Loupe unreachable: the last answer kept was used
  | "queued" // a write kept in the outbox
  | "failed"; // no answer at all (network failure, open circuit) and nothing to fall back on

export interface OperationRecord {
  service: ServiceName | "other";
  latencyMs: number;
  outcome: Outcome;
  status: number; // 0 when there was no answer
  /** A GET whose answer the JSON cache may keep (the denominator of the hit rate). */
  cacheable: boolean;
}

export interface StatsSnapshot {
  operations: number;
  errors: number;
  /** errors / operations (0 with no operations). */
  errorRate: number;
  clientErrors: number;
  cacheLookups: number;
  cacheHits: number;
  /** cacheHits / cacheLookups (0 with no lookups). */
  cacheHitRate: number;
  ttlHits: number;
  notModified: number;
  staleServed: number;
  queued: number;
  retries: number;
  deduplicated: number;
  latency: { avgMs: number; p50Ms: number; p95Ms: number; p99Ms: number; samples: number };
}

export interface Stats extends StatsSnapshot {
  services: Record<ServiceName | "other", StatsSnapshot>;
}

const WINDOW = 1000;

class Bucket {
  operations = 0;
  errors = 0;
  clientErrors = 0;
  cacheLookups = 0;
  cacheHits = 0;
  ttlHits = 0;
  notModified = 0;
  staleServed = 0;
  queued = 0;
  retries = 0;
  deduplicated = 0;
  private latencySum = 0;
  private readonly window: number[] = [];
  private next = 0;

  add(record: OperationRecord): void {
    this.operations += 1;
    this.latencySum += record.latencyMs;
    if (this.window.length < WINDOW) this.window.push(record.latencyMs);
    else this.window[this.next] = record.latencyMs;
    this.next = (this.next + 1) % WINDOW;
    const failed = record.outcome === "failed" || record.outcome === "stale" || record.status >= 500;
    if (failed) this.errors += 1;
    else if (record.status >= 400) this.clientErrors += 1;
    if (record.cacheable) this.cacheLookups += 1;
    if (record.outcome === "ttl-hit") this.ttlHits += 1;
    if (record.outcome === "not-modified") this.notModified += 1;
    if (record.outcome === "stale") this.staleServed += 1;
    if (record.outcome === "queued") this.queued += 1;
    if (record.cacheable && (record.outcome === "ttl-hit" || record.outcome === "not-modified")) {
      this.cacheHits += 1;
    }
  }

  snapshot(): StatsSnapshot {
    const sorted = [...this.window].sort((a, b) => a - b);
    return {
      operations: this.operations,
      errors: this.errors,
      errorRate: ratio(this.errors, this.operations),
      clientErrors: this.clientErrors,
      cacheLookups: this.cacheLookups,
      cacheHits: this.cacheHits,
      cacheHitRate: ratio(this.cacheHits, this.cacheLookups),
      ttlHits: this.ttlHits,
      notModified: this.notModified,
      staleServed: this.staleServed,
      queued: this.queued,
      retries: this.retries,
      deduplicated: this.deduplicated,
      latency: {
        avgMs: ratio(this.latencySum, this.operations),
        p50Ms: percentile(sorted, 50),
        p95Ms: percentile(sorted, 95),
        p99Ms: percentile(sorted, 99),
        samples: sorted.length,
      },
    };
  }
}

export class StatsRecorder {
  private total = new Bucket();
  private perService = new Map<ServiceName | "other", Bucket>();

  record(record: OperationRecord): void {
    this.total.add(record);
    this.bucket(record.service).add(record);
  }

  retry(service: ServiceName | "other"): void {
    this.total.retries += 1;
    this.bucket(service).retries += 1;
  }

  deduplicated(service: ServiceName | "other"): void {
    this.total.deduplicated += 1;
    this.bucket(service).deduplicated += 1;
  }

  snapshot(): Stats {
    const services = {} as Record<ServiceName | "other", StatsSnapshot>;
    for (const name of [...SERVICE_NAMES, "other" as const]) services[name] = this.bucket(name).snapshot();
    return { ...this.total.snapshot(), services };
  }

  reset(): void {
    this.total = new Bucket();
    this.perService = new Map();
  }

  private bucket(service: ServiceName | "other"): Bucket {
    let bucket = this.perService.get(service);
    if (!bucket) {
      bucket = new Bucket();
      this.perService.set(service, bucket);
    }
    return bucket;
  }
}

/** Nearest-rank percentile of sorted samples. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] ?? 0;
}

function ratio(a: number, b: number): number {
  return b === 0 ? 0 : a / b;
}
