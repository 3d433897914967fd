import type { PackedVectors } from '../knn/index.js';

/** Queries used to estimate a radius at most: enough for a percentile, bounded work on a large label. */
const maxQueries = 500;

/**
 * A label's radius: the `percentile` of its references' distances to their nearest other reference
 * of the label (cosine distance on unit vectors), i.e. how far apart the label's own examples lie.
 * Null with fewer than two references.
 */
export function labelRadius(packed: PackedVectors, dimension: number, percentile: number): number | null {
  const n = packed.ids.length;
  if (n < 2) return null;
  const data = packed.data;
  const step = Math.max(1, Math.floor(n / maxQueries));
  const nearest: number[] = [];
  for (let q = 0; q < n; q += step) {
    let best = Infinity;
    for (let j = 0; j < n; j++) {
      if (j === q) continue;
      let dot = 0;
      for (let i = 0; i < dimension; i++) dot += data[q * dimension + i]! * data[j * dimension + i]!;
      best = Math.min(best, 1 - dot);
    }
    nearest.push(best);
  }
  nearest.sort((a, b) => a - b);
  return nearest[Math.min(nearest.length - 1, Math.ceil((percentile / 100) * nearest.length) - 1)]!;
}
