// Which service answers a path, the way the gateway routes it (deploy/Caddyfile).

export type ServiceName = "catalog" | "images" | "backup" | "inspect";
export const SERVICE_NAMES: readonly ServiceName[] = ["catalog", "images", "backup", "inspect"];

const PREFIXES: ReadonlyArray<readonly [string, ServiceName]> = [
  ["/api/programs", "catalog"],
  ["/api/results", "catalog"],
  ["/api/migrations", "catalog"],
  ["/api/retention", "catalog"],
  ["/api/audit", "catalog"],
  ["/api/image-records", "catalog"],
  ["/api/storage", "catalog"],
  ["/api/schema", "catalog"],
  ["/api/tokens", "catalog"],
  ["/api/services/catalog", "catalog"],
  ["/api/images", "images"],
  ["/api/integrity", "images"],
  ["/api/services/images", "images"],
  ["/api/backups", "backup"],
  ["/api/backup-schedules", "backup"],
  ["/api/exports", "backup"],
  ["/api/services/backup", "backup"],
  ["/api/inspections", "inspect"],
  ["/api/services/inspect", "inspect"],
];

/** The service behind an API path, or undefined for a path outside `/api/` routes. */
export function serviceOf(pathname: string): ServiceName | undefined {
  for (const [prefix, service] of PREFIXES) {
    if (pathname === prefix || pathname.startsWith(`${prefix}/`)) return service;
  }
  return undefined;
}

/** The path of a URL relative to the client's base URL (which may carry a path of its own). */
export function apiPath(url: string, baseUrl: string): string {
  const path = new URL(url, "http://loupe.invalid").pathname;
  const basePath = new URL(baseUrl || "/", "http://loupe.invalid").pathname.replace(/\/+$/, "");
  return basePath && path.startsWith(basePath) ? path.slice(basePath.length) || "/" : path;
}
