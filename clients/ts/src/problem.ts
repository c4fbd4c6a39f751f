// Errors as RFC 9457 problem details, the way every Loupe service answers them.

export interface FieldError {
  field: string;
  message: string;
}

export interface ProblemFields {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  instance?: string;
  requestId?: string;
  errors?: FieldError[];
  /** Every member of the problem document as received (extension members included). */
  body?: Record<string, unknown>;
  retryAfterMs?: number;
}

/** A problem answered by Loupe (or made by the client: an open circuit, a network failure). */
export class LoupeProblem extends Error {
  override readonly name = "LoupeProblem";
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly instance: string | undefined;
  /** The `request_id` of the problem, or the answer's `X-Request-Id`. */
  readonly requestId: string | undefined;
  /** On a 422: each field that failed validation. */
  readonly errors: FieldError[] | undefined;
  readonly body: Record<string, unknown>;
  /** `Retry-After` of the answer, in milliseconds, when it had one. */
  readonly retryAfterMs: number | undefined;

  constructor(fields: ProblemFields, options?: { cause?: unknown }) {
    const title = fields.title ?? statusTitle(fields.status);
    super(fields.detail ? `${title}: ${fields.detail}` : title, options);
    this.type = fields.type ?? "about:blank";
    this.title = title;
    this.status = fields.status;
    this.detail = fields.detail ?? "";
    this.instance = fields.instance;
    this.requestId = fields.requestId;
    this.errors = fields.errors;
    this.body = fields.body ?? {};
    this.retryAfterMs = fields.retryAfterMs;
  }

  /** Build from an answer's status, headers and (already parsed) body. */
  static fromParts(response: Response, body: unknown): LoupeProblem {
    const doc = isRecord(body) ? body : {};
    const retryAfter = parseRetryAfter(response.headers.get("Retry-After"), Date.now());
    return new LoupeProblem({
      type: str(doc["type"]),
      title: str(doc["title"]) ?? (response.statusText || undefined),
      status: typeof doc["status"] === "number" ? doc["status"] : response.status,
      detail: str(doc["detail"]) ?? (typeof body === "string" ? body : undefined),
      instance: str(doc["instance"]),
      requestId: str(doc["request_id"]) ?? response.headers.get("X-Request-Id") ?? undefined,
      errors: Array.isArray(doc["errors"]) ? (doc["errors"] as FieldError[]) : undefined,
      body: doc,
      ...(retryAfter === undefined ? {} : { retryAfterMs: retryAfter }),
    });
  }

  /** Read a failed answer's body and build the problem from it. */
  static async fromResponse(response: Response): Promise<LoupeProblem> {
    const text = await response.text().catch(() => "");
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: kept as the detail
    }
    return LoupeProblem.fromParts(response, body);
  }
}

/**
 * The problem type of the 409 Loupe answers while the first request with the same
 * `Idempotency-Key` is still running (with `Retry-After`): the one 409 worth sending again.
 */
export const IN_FLIGHT_PROBLEM = "urn:loupe:problem:idempotency-key-in-flight";

/** A 409 (the resource or the idempotency key is busy) or a 412 (If-Match is stale). */
export function isConflict(error: unknown): error is LoupeProblem {
  return error instanceof LoupeProblem && (error.status === 409 || error.status === 412);
}

/** Worth trying again later: a network failure (status 0), 429, 502, 503 or 504. */
export function isRetryable(error: unknown): error is LoupeProblem {
  return error instanceof LoupeProblem && RETRYABLE_STATUSES.has(error.status);
}

export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([0, 429, 502, 503, 504]);

/** Parse `Retry-After` (delay-seconds or an HTTP date) into milliseconds from `now`. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

export function problemResponse(fields: ProblemFields, headers: Record<string, string> = {}): Response {
  const body = {
    type: fields.type ?? "about:blank",
    title: fields.title ?? statusTitle(fields.status),
    status: fields.status,
    detail: fields.detail ?? "",
    ...(fields.requestId ? { request_id: fields.requestId } : {}),
  };
  return new Response(JSON.stringify(body), {
    status: fields.status,
    headers: { "Content-Type": "application/problem+json", ...headers },
  });
}

function statusTitle(status: number): string {
  const titles: Record<number, string> = {
    0: "Network Error",
    409: "Conflict",
    412: "Precondition Failed",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    503: "Service Unavailable",
  };
  return titles[status] ?? `HTTP ${status}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}
