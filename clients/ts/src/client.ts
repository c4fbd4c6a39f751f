// createLoupeClient: the four typed service clients over one resilient transport.
import createClient from "openapi-fetch";
import type { BreakerState } from "./breaker.js";
import {
  migrateFromLocalStorage,
  rollbackMigration,
  type KeyValueStorage,
  type MigrateOptions,
  type MigrationOutcome,
  type RollbackOutcome,
} from "./legacy.js";
import { subscribeResults, type ResultFilter, type StoredResult, type SubscribeOptions } from "./live.js";
import type { OutboxEvent, OutboxItem, ReplayReport } from "./outbox.js";
import type * as backup from "./schema/backup.js";
import type * as catalog from "./schema/catalog.js";
import type * as images from "./schema/images.js";
import type * as inspect from "./schema/inspect.js";
import type { ServiceName } from "./services.js";
import type { Stats } from "./stats.js";
import { Transport, type TransportOptions } from "./transport.js";
import { withQueuedWrites, type ServiceClient } from "./typed.js";

export type LoupeClientOptions = TransportOptions;

/** The outbox as the application sees it. Without IndexedDB it is empty and writes throw. */
export interface OutboxApi {
  count(): Promise<number>;
  list(): Promise<OutboxItem[]>;
  discard(id: string): Promise<boolean>;
  replay(): Promise<ReplayReport>;
  subscribe(listener: (event: OutboxEvent) => void): () => void;
}

export interface LoupeClient {
  catalog: ServiceClient<catalog.paths>;
  images: ServiceClient<images.paths>;
  backup: ServiceClient<backup.paths>;
  inspect: ServiceClient<inspect.paths>;
  /** The resilient fetch the typed clients use, for calls they cannot make. */
  fetch: (input: Request | string | URL, init?: RequestInit) => Promise<Response>;
  outbox: OutboxApi;
  stats(): Stats;
  resetStats(): void;
  breakers(): Record<ServiceName, BreakerState>;
  clearCache(): Promise<void>;
  subscribeResults(
    filter: ResultFilter,
    onResult: (result: StoredResult) => void,
    options?: SubscribeOptions,
  ): () => void;
  migrateFromLocalStorage(options?: MigrateOptions): Promise<MigrationOutcome>;
  rollbackMigration(runId: string, options?: { storage?: KeyValueStorage }): Promise<RollbackOutcome>;
  /** Stop listening for `online` and stop the outbox's timer. */
  close(): void;
}

const noOutbox: OutboxApi = {
  count: async () => 0,
  list: async () => [],
  discard: async () => false,
  replay: async () => ({ replayed: 0, conflicts: 0, failed: 0, remaining: 0 }),
  subscribe: () => () => undefined,
};

export function createLoupeClient(options: LoupeClientOptions = {}): LoupeClient {
  const transport = new Transport(options);
  const typed = <Paths extends {}>(): ServiceClient<Paths> =>
    withQueuedWrites(createClient<Paths>({ baseUrl: transport.baseUrl, fetch: transport.fetch }));
  const outbox = transport.outbox;
  const onOnline = (): void => outbox?.kick();
  const target = globalThis as { addEventListener?: EventTarget["addEventListener"]; removeEventListener?: EventTarget["removeEventListener"] };
  target.addEventListener?.("online", onOnline);

  return {
    catalog: typed<catalog.paths>(),
    images: typed<images.paths>(),
    backup: typed<backup.paths>(),
    inspect: typed<inspect.paths>(),
    fetch: transport.fetch,
    outbox: outbox
      ? {
          count: () => outbox.count(),
          list: () => outbox.list(),
          discard: (id) => outbox.discard(id),
          replay: () => outbox.replay(),
          subscribe: (listener) => outbox.subscribe(listener),
        }
      : noOutbox,
    stats: () => transport.stats.snapshot(),
    resetStats: () => transport.stats.reset(),
    breakers: () => transport.breakerStates(),
    clearCache: async () => transport.cache?.clear(),
    subscribeResults: (filter, onResult, subscribeOptions) =>
      subscribeResults(transport, filter, onResult, subscribeOptions),
    migrateFromLocalStorage: (migrateOptions) => migrateFromLocalStorage(transport, migrateOptions),
    rollbackMigration: (runId, rollbackOptions) => rollbackMigration(transport, runId, rollbackOptions),
    close: () => {
      target.removeEventListener?.("online", onOnline);
      outbox?.close();
    },
  };
}
