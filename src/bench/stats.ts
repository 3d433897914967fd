/** Small numeric helpers shared by the bench sections. */

export interface Distribution {
  /** Samples the figures are computed from. */
  samples: number;
  mean: number;
  p50: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of sorted values (p in [0, 100]). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function distribution(values: readonly number[]): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    samples: sorted.length,
    mean: sorted.length ? sum / sorted.length : Number.NaN,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
  };
}

/** Rounds for the document: figures carry 3 significant digits at most, so noise is not dressed up as precision. */
export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const scale = 10 ** (digits - 1 - Math.floor(Math.log10(Math.abs(x))));
  return Math.round(x * scale) / scale;
}

export function roundDistribution(d: Distribution): Distribution {
  return { samples: d.samples, mean: round(d.mean), p50: round(d.p50), p99: round(d.p99), max: round(d.max) };
}

/**
 * Keeps `concurrency` copies of `step` running back to back for a warm-up and then a measured
 * window of `seconds`. Throughput is the items of the steps that finished inside the window divided
 * by its length (the standard closed-loop measure); latencies are those steps' durations.
 */
export async function saturate(
  concurrency: number,
  seconds: number,
  warmupSeconds: number,
  step: (lane: number) => Promise<number>,
): Promise<{ items: number; seconds: number; latenciesMs: number[] }> {
  const measureFrom = performance.now() + warmupSeconds * 1000;
  const end = measureFrom + seconds * 1000;
  let items = 0;
  const latenciesMs: number[] = [];
  await Promise.all(
    Array.from({ length: concurrency }, async (_, lane) => {
      while (performance.now() < end) {
        const before = performance.now();
        const done = await step(lane);
        const after = performance.now();
        if (after >= measureFrom && after <= end) {
          items += done;
          latenciesMs.push(after - before);
        }
      }
    }),
  );
  return { items, seconds, latenciesMs };
}
