// openapi-fetch clients whose writes may answer "kept in the outbox" instead of an answer.
import type { Client, FetchResponse, MaybeOptionalInit } from "openapi-fetch";
import type { HttpMethod, MediaType, PathsWithMethod, RequiredKeysOf } from "openapi-typescript-helpers";
import { LoupeProblem } from "./problem.js";
import { QUEUED_HEADER } from "./transport.js";

/** A write Loupe could not be reached for: kept in the outbox, replayed later. */
export interface QueuedWrite {
  queued: true;
  /** The outbox item's id (for `outbox.discard(id)` and the outbox events). */
  id: string;
  data?: undefined;
  error?: undefined;
  response: Response;
}

type InitParam<Init> =
  RequiredKeysOf<Init> extends never ? [(Init & { [key: string]: unknown })?] : [Init & { [key: string]: unknown }];

type AnyPaths = Record<string, Record<HttpMethod, {}>>;

export type WriteMethod<Paths extends AnyPaths, Method extends HttpMethod> = <
  Path extends PathsWithMethod<Paths, Method>,
  Init extends MaybeOptionalInit<Paths[Path], Method>,
>(
  url: Path,
  ...init: InitParam<Init>
) => Promise<(FetchResponse<Paths[Path][Method], Init, MediaType> & { queued?: undefined }) | QueuedWrite>;

/** The typed client of one service: openapi-fetch's, with writes that may be queued. */
export type ServiceClient<Paths extends {}> = Omit<Client<Paths>, "POST" | "PUT" | "PATCH" | "DELETE"> & {
  POST: WriteMethod<Paths & AnyPaths, "post">;
  PUT: WriteMethod<Paths & AnyPaths, "put">;
  PATCH: WriteMethod<Paths & AnyPaths, "patch">;
  DELETE: WriteMethod<Paths & AnyPaths, "delete">;
};

export function withQueuedWrites<Paths extends {}>(client: Client<Paths>): ServiceClient<Paths> {
  type Call = (url: string, init?: unknown) => Promise<{ response: Response }>;
  const write =
    (call: Call) =>
    async (url: string, init?: unknown): Promise<unknown> => {
      const result = await call(url, init);
      const id = result.response.headers.get(QUEUED_HEADER);
      return id ? ({ queued: true, id, response: result.response } satisfies QueuedWrite) : result;
    };
  const c = client as unknown as Record<"POST" | "PUT" | "PATCH" | "DELETE", Call>;
  return {
    ...client,
    POST: write(c.POST),
    PUT: write(c.PUT),
    PATCH: write(c.PATCH),
    DELETE: write(c.DELETE),
  } as unknown as ServiceClient<Paths>;
}

type Unwrapped<R> = R extends { queued: true } ? QueuedWrite : R extends { data: infer D } ? D : never;

/**
 * The data of a typed call, or its error thrown as a `LoupeProblem`. A write kept in the
 * outbox gives its `QueuedWrite`.
 */
export async function unwrap<R extends { data?: unknown; error?: unknown; response: Response; queued?: boolean }>(
  result: R | Promise<R>,
): Promise<Unwrapped<R>> {
  const r = await result;
  if (r.queued) return r as unknown as Unwrapped<R>;
  if (!r.response.ok) throw LoupeProblem.fromParts(r.response, r.error);
  return r.data as Unwrapped<R>;
}
