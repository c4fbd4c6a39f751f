// The alert thresholds of deploy/monitoring/prometheus/rules/loupe.alerts.yaml, so the Health
// page marks what Prometheus would page on. tests/console/test_thresholds.py reads both files
// and fails when they disagree.
export const ALERTS = {
  /** LoupeHighErrorRate: the share of answers that are 5xx. */
  errorRatio: 0.05,
  /** LoupeSlowRequests: the 95th percentile latency, in seconds. */
  p95Seconds: 2,
  /** LoupeObjectStoreFilling: the share of the object store's capacity used. */
  storageUsedRatio: 0.85,
} as const;
