// Who is signed in: the pasted token (kept in sessionStorage, so it dies with the tab), the
// client every page calls through, and what the token's role may do.
import { createLoupeClient, LoupeProblem, unwrap, type LoupeClient } from "@loupe/client";

const KEY = "loupe.console.token";

export interface Caller {
  token_id: string;
  name: string;
  role: string;
  permissions: string[];
}

function readToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

class Session {
  token = $state<string | null>(readToken());
  caller = $state<Caller | null>(null);
  checking = $state(false);
  problem = $state<LoupeProblem | null>(null);
  readonly client: LoupeClient;

  constructor() {
    this.client = createLoupeClient({
      getToken: () => this.token ?? undefined,
      // An operator wants an error now, not a write kept for later; and every read fresh
      // (revalidated with its ETag), since others change the same data.
      outbox: false,
      cache: { ttl: { "/api/programs": 0, "/api/results": 0 }, defaultTtlMs: 0 },
    });
  }

  can(permission: string): boolean {
    return this.caller?.permissions.includes(permission) ?? false;
  }

  /** Asks the catalog who the token is; keeps it only when the answer is yes. */
  async signIn(token: string): Promise<boolean> {
    this.token = token.trim();
    this.checking = true;
    this.problem = null;
    try {
      const about = await unwrap(
        this.client.catalog.GET("/api/services/catalog", {
          headers: { "X-Loupe-Cache": "no-store" },
        }),
      );
      const caller = (about as { caller?: Caller }).caller;
      if (!caller) throw new Error("the catalog did not say who is asking");
      this.caller = caller;
      sessionStorage.setItem(KEY, this.token);
      return true;
    } catch (error) {
      this.problem = error instanceof LoupeProblem ? error : null;
      if (!(error instanceof LoupeProblem)) console.error(error);
      this.token = null;
      this.caller = null;
      sessionStorage.removeItem(KEY);
      return false;
    } finally {
      this.checking = false;
    }
  }

  async resume(): Promise<void> {
    if (this.token) await this.signIn(this.token);
  }

  async signOut(): Promise<void> {
    sessionStorage.removeItem(KEY);
    this.token = null;
    this.caller = null;
    await this.client.clearCache();
  }
}

export const session = new Session();
export const loupe = (): LoupeClient => session.client;
