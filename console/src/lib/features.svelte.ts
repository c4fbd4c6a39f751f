// Which routes the running services offer, from their OpenAPI documents: pages whose API is
// not there yet say so instead of failing.
import { loupe } from "./session.svelte";

class Features {
  paths = $state<Set<string>>(new Set());
  loaded = $state(false);

  async load(): Promise<void> {
    const found = new Set<string>();
    await Promise.all(
      ["catalog", "images", "backup", "inspect"].map(async (service) => {
        try {
          const answer = await loupe().fetch(`/openapi/${service}.json`);
          if (!answer.ok) return;
          const doc = (await answer.json()) as { paths?: Record<string, unknown> };
          for (const path of Object.keys(doc.paths ?? {})) found.add(path);
        } catch {
          // A service that does not answer offers nothing new.
        }
      }),
    );
    this.paths = found;
    this.loaded = true;
  }

  has(path: string): boolean {
    return this.paths.has(path);
  }
}

export const features = new Features();
