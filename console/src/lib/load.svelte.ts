// One asynchronous load a page shows: loading (skeleton), the data, or the problem.
import { LoupeProblem, type QueuedWrite } from "@loupe/client";

export class Load<T> {
  data = $state<T | undefined>(undefined);
  problem = $state<LoupeProblem | null>(null);
  loading = $state(true);
  private generation = 0;

  constructor(private readonly fetcher: () => Promise<T>) {}

  async run(): Promise<void> {
    const mine = ++this.generation;
    this.loading = true;
    this.problem = null;
    try {
      const data = await this.fetcher();
      if (mine === this.generation) this.data = data;
    } catch (error) {
      if (mine === this.generation) this.problem = asProblem(error);
    } finally {
      if (mine === this.generation) this.loading = false;
    }
  }
}

export function asProblem(error: unknown): LoupeProblem {
  if (error instanceof LoupeProblem) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new LoupeProblem({ type: "about:blank", title: "Error", status: 0, detail: message });
}

/** A write's answer (the console's client has no outbox, so a write is never queued). */
export function sent<T>(answer: T | QueuedWrite): T {
  if (answer && typeof answer === "object" && "queued" in answer && answer.queued === true) {
    throw new Error("the write was queued instead of sent");
  }
  return answer as T;
}
