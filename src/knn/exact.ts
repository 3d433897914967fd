/** A reference found near a query; distance is cosine distance 1 - dot, clamped to [0, 2]. */
export interface Neighbour {
  referenceId: number;
  distance: number;
}

/**
 * Vectors kept in one contiguous Float32Array and searched by a full scan. For small collections
 * this beats a graph index (no build, exact answers) and is cache-friendly.
 */
export class ExactVectors {
  private data: Float32Array;
  private idOf: Float64Array;
  private readonly slotOf = new Map<number, number>();
  private used = 0;
  /** The query as doubles, converted once per search instead of once per reference (20% of a scan). */
  private readonly query: Float64Array;

  constructor(
    readonly dimension: number,
    packed?: { ids: readonly number[]; data: Float32Array },
  ) {
    this.query = new Float64Array(dimension);
    const n = packed?.ids.length ?? 0;
    this.data = new Float32Array(Math.max(n, 64) * dimension);
    this.idOf = new Float64Array(Math.max(n, 64));
    if (packed) {
      this.data.set(packed.data.subarray(0, n * dimension));
      packed.ids.forEach((id, slot) => {
        this.idOf[slot] = id;
        this.slotOf.set(id, slot);
      });
      this.used = n;
    }
  }

  get size(): number {
    return this.used;
  }

  has(id: number): boolean {
    return this.slotOf.has(id);
  }

  ids(): IterableIterator<number> {
    return this.slotOf.keys();
  }

  /** Adds a vector, or replaces the vector of an id already present. */
  add(id: number, vector: Float32Array): void {
    let slot = this.slotOf.get(id);
    if (slot === undefined) {
      if (this.used === this.idOf.length) this.grow();
      slot = this.used++;
      this.idOf[slot] = id;
      this.slotOf.set(id, slot);
    }
    this.data.set(vector, slot * this.dimension);
  }

  remove(id: number): boolean {
    const slot = this.slotOf.get(id);
    if (slot === undefined) return false;
    // Move the last vector into the hole so the live vectors stay contiguous.
    const last = --this.used;
    if (slot !== last) {
      const lastId = this.idOf[last]!;
      this.data.copyWithin(slot * this.dimension, last * this.dimension, (last + 1) * this.dimension);
      this.idOf[slot] = lastId;
      this.slotOf.set(lastId, slot);
    }
    this.slotOf.delete(id);
    return true;
  }

  /** Every id with its vector (a view, valid until the next change); used to build a graph index. */
  *entries(): Generator<[number, Float32Array]> {
    for (let slot = 0; slot < this.used; slot++) {
      yield [this.idOf[slot]!, this.data.subarray(slot * this.dimension, (slot + 1) * this.dimension)];
    }
  }

  /** The k nearest vectors, nearest first. */
  search(vector: Float32Array, k: number): Neighbour[] {
    if (vector.length !== this.dimension) throw new Error(`query has ${vector.length} dimensions, the references ${this.dimension}`);
    const query = this.query;
    query.set(vector);
    const n = this.used;
    const dim = this.dimension;
    const want = Math.min(k, n);
    if (want === 0) return [];
    // Partial selection: keep the best `want` dots sorted (descending) and insert only when a
    // candidate beats the worst kept one, which after the first few rows is rare.
    const bestDot = new Float64Array(want).fill(-Infinity);
    const bestSlot = new Int32Array(want).fill(-1);
    const data = this.data;
    const tail = dim & ~3;
    for (let slot = 0, base = 0; slot < n; slot++, base += dim) {
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let j = 0;
      for (; j < tail; j += 4) {
        s0 += data[base + j]! * query[j]!;
        s1 += data[base + j + 1]! * query[j + 1]!;
        s2 += data[base + j + 2]! * query[j + 2]!;
        s3 += data[base + j + 3]! * query[j + 3]!;
      }
      for (; j < dim; j++) s0 += data[base + j]! * query[j]!;
      const dot = s0 + s1 + s2 + s3;
      if (dot <= bestDot[want - 1]!) continue;
      let i = want - 1;
      while (i > 0 && bestDot[i - 1]! < dot) {
        bestDot[i] = bestDot[i - 1]!;
        bestSlot[i] = bestSlot[i - 1]!;
        i--;
      }
      bestDot[i] = dot;
      bestSlot[i] = slot;
    }
    const out: Neighbour[] = [];
    for (let i = 0; i < want; i++) out.push({ referenceId: this.idOf[bestSlot[i]!]!, distance: cosineDistance(bestDot[i]!) });
    return out;
  }

  private grow(): void {
    const capacity = this.idOf.length * 2;
    const data = new Float32Array(capacity * this.dimension);
    data.set(this.data);
    const ids = new Float64Array(capacity);
    ids.set(this.idOf);
    this.data = data;
    this.idOf = ids;
  }
}

/** 1 - dot, clamped: rounding can push the dot of near-identical unit vectors past 1. */
export function cosineDistance(dot: number): number {
  return Math.min(2, Math.max(0, 1 - dot));
}
