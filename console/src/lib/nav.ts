// The pages, what each needs, and where the navigation shows them.
export interface NavItem {
  id: string;
  label: string;
  /** The permission a token needs to see the page at all. */
  permission: string | null;
  /** An API route the page cannot work without (feature-detected). */
  requires?: string;
}

export const NAV: NavItem[] = [
  { id: "lines", label: "Lines", permission: "results:read" },
  { id: "yield", label: "Yield", permission: "results:read" },
  { id: "defects", label: "Defects", permission: "results:read", requires: "/api/results/defects" },
  { id: "programs", label: "Programs", permission: "programs:read" },
  { id: "try", label: "Try", permission: "inspections:request" },
  { id: "backups", label: "Backups", permission: "backups:read" },
  { id: "restore", label: "Restore", permission: "backups:restore" },
  { id: "schedules", label: "Schedules & retention", permission: "backups:read" },
  { id: "migration", label: "Migration", permission: "migrations:run" },
  { id: "storage", label: "Storage", permission: "integrity:read" },
  { id: "health", label: "Health", permission: null },
  { id: "audit", label: "Audit", permission: "audit:read" },
  { id: "tokens", label: "Tokens", permission: "tokens:manage", requires: "/api/tokens" },
];
