// p-chart arithmetic for the Yield page: plain functions, unit-free.
export interface Point {
  at: number;
  total: number;
  pass: number;
}

export interface Limits {
  pbar: number | null;
  ucl: number[];
  lcl: number[];
}

/** p̄ over all the points and, per point, p̄ ± 3·sqrt(p̄(1−p̄)/n), clamped to [0, 1]. */
export function pchart(points: Point[]): Limits {
  const total = points.reduce((s, p) => s + p.total, 0);
  if (total === 0) return { pbar: null, ucl: [], lcl: [] };
  const pbar = points.reduce((s, p) => s + p.pass, 0) / total;
  const sigma = (n: number): number => (n > 0 ? 3 * Math.sqrt((pbar * (1 - pbar)) / n) : 0);
  return {
    pbar,
    ucl: points.map((p) => Math.min(1, pbar + sigma(p.total))),
    lcl: points.map((p) => Math.max(0, pbar - sigma(p.total))),
  };
}

export function outside(p: Point, i: number, limits: Limits): boolean {
  if (limits.pbar === null || p.total === 0) return false;
  const rate = p.pass / p.total;
  return rate > (limits.ucl[i] ?? 1) || rate < (limits.lcl[i] ?? 0);
}
