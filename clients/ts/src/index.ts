export { createLoupeClient, type LoupeClient, type LoupeClientOptions, type OutboxApi } from "./client.js";
export {
  IN_FLIGHT_PROBLEM,
  LoupeProblem,
  isConflict,
  isRetryable,
  parseRetryAfter,
  type FieldError,
} from "./problem.js";
export { unwrap, type QueuedWrite, type ServiceClient } from "./typed.js";
export {
  Transport,
  QUEUED_HEADER,
  CIRCUIT_HEADER,
  CACHE_CONTROL_HEADER,
  QUEUE_CONTROL_HEADER,
  type TransportOptions,
  type TokenSource,
} from "./transport.js";
export { CACHE_HEADER, STALE_HEADER, STORED_AT_HEADER, DEFAULT_TTL, type CacheOptions } from "./cache.js";
export { CircuitBreaker, type BreakerOptions, type BreakerState } from "./breaker.js";
export { backoffDelay, nextDelay, retryPolicy, type RetryOptions, type RetryPolicy } from "./retry.js";
export { serviceOf, SERVICE_NAMES, type ServiceName } from "./services.js";
export { systemClock, type Clock } from "./clock.js";
export type { Stats, StatsSnapshot } from "./stats.js";
export type { OutboxEvent, OutboxItem, ReplayReport } from "./outbox.js";
export { subscribeResults, type GapFill, type ResultFilter, type StoredResult, type SubscribeOptions, type LiveStatus } from "./live.js";
export {
  migrateFromLocalStorage,
  rollbackMigration,
  isVerified,
  LEGACY_KEY,
  BACKUP_KEY,
  COMPLETED_KEY,
  type MigrateOptions,
  type MigrationOutcome,
  type MigrationReport,
  type MigrationItem,
  type RollbackOutcome,
  type RollbackReport,
  type KeyValueStorage,
} from "./legacy.js";
export type * as schema from "./schema/index.js";
