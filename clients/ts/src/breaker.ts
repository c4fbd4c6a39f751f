// A circuit breaker per service: open after N consecutive failures, one probe when half-open.
import type { Clock } from "./clock.js";

export type BreakerState = "closed" | "open" | "half-open";

export interface BreakerOptions {
  /** Consecutive failures (network errors and 5xx) that open the circuit (default 5). */
  failureThreshold?: number;
  /** How long the circuit stays open before one probe may pass, in ms (default 30 000). */
  cooldownMs?: number;
}

export class CircuitBreaker {
  private failures = 0;
  private openedAt = 0;
  private probing = false;
  private current: BreakerState = "closed";
  private readonly threshold: number;
  private readonly cooldownMs: number;

  constructor(
    private readonly clock: Clock,
    options: BreakerOptions = {},
    private readonly onChange?: (state: BreakerState) => void,
  ) {
    this.threshold = options.failureThreshold ?? 5;
    this.cooldownMs = options.cooldownMs ?? 30_000;
  }

  get state(): BreakerState {
    if (this.current === "open" && this.clock.now() - this.openedAt >= this.cooldownMs) {
      return "half-open";
    }
    return this.current;
  }

  /** Ms until an open circuit lets a probe through (0 when it would now). */
  get retryInMs(): number {
    return this.current === "open" ? Math.max(0, this.openedAt + this.cooldownMs - this.clock.now()) : 0;
  }

  /** May a request go out now? In half-open, only the first one (the probe) may. */
  tryPass(): boolean {
    const state = this.state;
    if (state === "closed") return true;
    if (state === "open" || this.probing) return false;
    this.probing = true;
    this.set("half-open");
    return true;
  }

  success(): void {
    this.failures = 0;
    this.probing = false;
    this.set("closed");
  }

  failure(): void {
    this.failures += 1;
    const wasProbe = this.probing;
    this.probing = false;
    if (wasProbe || this.failures >= this.threshold) {
      this.openedAt = this.clock.now();
      this.set("open");
    }
  }

  private set(state: BreakerState): void {
    if (this.current === state) return;
    this.current = state;
    this.onChange?.(state);
  }
}
