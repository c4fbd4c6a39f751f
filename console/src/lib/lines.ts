// Per-line counters for the Lines page, kept outside Svelte's reactivity so thousands of
// results a second cost a few integer updates each; the page snapshots them a few times a second.
export interface LineResult {
  result_id: string;
  line_id: string;
  verdict: string;
  captured_at: string;
  station?: string;
  part_id?: string;
  program_id?: string | null;
}

export interface LineTile {
  line_id: string;
  perMinute: number;
  total: number;
  pass: number;
  fail: number;
  error: number;
  lastAt: number;
}

const WINDOW_MS = 60_000;

class LineCounter {
  total = 0;
  pass = 0;
  fail = 0;
  error = 0;
  lastAt = 0;
  /** arrival times within the last minute, oldest first (a queue with a moving head). */
  private times: number[] = [];
  private head = 0;

  add(verdict: string, capturedAt: number, now: number): void {
    this.total += 1;
    if (verdict === "pass") this.pass += 1;
    else if (verdict === "fail") this.fail += 1;
    else this.error += 1;
    if (capturedAt > this.lastAt) this.lastAt = capturedAt;
    if (capturedAt >= now - WINDOW_MS) this.times.push(capturedAt);
  }

  perMinute(now: number): number {
    while (this.head < this.times.length && (this.times[this.head] ?? 0) < now - WINDOW_MS) this.head += 1;
    if (this.head > 4096) {
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
    return this.times.length - this.head;
  }
}

export class LinesModel {
  private lines = new Map<string, LineCounter>();
  private feed: LineResult[] = [];
  // Ids seen lately, in two generations so the memory stays bounded: the list read at start
  // and the live feed's replay may both carry a result.
  private seen = new Set<string>();
  private seenBefore = new Set<string>();
  constructor(private readonly feedSize = 50) {}

  /** Counts a result once; false when it was counted already. */
  add(result: LineResult, now = Date.now()): boolean {
    const id = result.result_id;
    if (this.seen.has(id) || this.seenBefore.has(id)) return false;
    this.seen.add(id);
    if (this.seen.size > 20_000) {
      this.seenBefore = this.seen;
      this.seen = new Set();
    }
    let counter = this.lines.get(result.line_id);
    if (!counter) {
      counter = new LineCounter();
      this.lines.set(result.line_id, counter);
    }
    counter.add(result.verdict, Date.parse(result.captured_at), now);
    this.feed.push(result);
    if (this.feed.length > this.feedSize * 4) this.trimFeed();
    return true;
  }

  /** The newest `feedSize` by capture time: a gap filled from the list brings older results late. */
  private trimFeed(): void {
    this.feed.sort((a, b) => (a.captured_at < b.captured_at ? -1 : a.captured_at > b.captured_at ? 1 : 0));
    this.feed = this.feed.slice(-this.feedSize);
  }

  tiles(now = Date.now()): LineTile[] {
    return [...this.lines.entries()]
      .map(([line_id, c]) => ({
        line_id,
        perMinute: c.perMinute(now),
        total: c.total,
        pass: c.pass,
        fail: c.fail,
        error: c.error,
        lastAt: c.lastAt,
      }))
      .sort((a, b) => a.line_id.localeCompare(b.line_id));
  }

  newest(): LineResult[] {
    this.trimFeed();
    return [...this.feed].reverse();
  }
}
