// When to try a request again, and how long to wait first.
import { parseRetryAfter } from "./problem.js";

export interface RetryOptions {
  /** Attempts in all, the first included (default 4). */
  attempts?: number;
  /** Base of the exponential backoff in ms (default 300). */
  baseMs?: number;
  /** No wait is longer than this, `Retry-After` included (default 30 000). */
  capMs?: number;
  /** Random source in [0, 1) for the jitter; tests pass their own. */
  random?: () => number;
}

export type RetryPolicy = Required<RetryOptions>;

export function retryPolicy(options: RetryOptions = {}): RetryPolicy {
  return {
    attempts: options.attempts ?? 4,
    baseMs: options.baseMs ?? 300,
    capMs: options.capMs ?? 30_000,
    random: options.random ?? Math.random,
  };
}

export const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);
export const RETRY_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504]);

/** A method may be retried when it is safe, or when it carries an `Idempotency-Key`. */
export function mayRetryMethod(method: string, headers: Headers): boolean {
  return SAFE_METHODS.has(method) || headers.has("Idempotency-Key");
}

/** Full jitter: a uniform wait in [0, min(cap, base * 2^(attempt-1))). */
export function backoffDelay(attempt: number, policy: RetryPolicy): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** (attempt - 1));
  return Math.floor(policy.random() * ceiling);
}

/**
 * The wait before the next attempt after `response` (undefined: a network failure), or
 * undefined when the answer is final. `attempt` counts the attempts made so far.
 */
export function nextDelay(
  attempt: number,
  response: Response | undefined,
  policy: RetryPolicy,
  now: number,
): number | undefined {
  if (attempt >= policy.attempts) return undefined;
  if (response === undefined) return backoffDelay(attempt, policy);
  if (!RETRY_STATUSES.has(response.status)) return undefined;
  const retryAfter = parseRetryAfter(response.headers.get("Retry-After"), now);
  if (retryAfter === undefined) return backoffDelay(attempt, policy);
  // Waiting less than the server asked is pointless; longer than the cap blocks the caller.
  return retryAfter > policy.capMs ? undefined : retryAfter;
}
