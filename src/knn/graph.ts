import hnswlib from 'hnswlib-node';
import { cosineDistance, type Neighbour } from './exact.js';
import type { VectorIndexOptions } from './options.js';

// hnswlib-node is CommonJS assigning module.exports, so Node's ESM loader offers only a default export.
const { HierarchicalNSW } = hnswlib;
type Hnsw = InstanceType<typeof HierarchicalNSW>;

/**
 * An hnswlib HNSW graph plus the bookkeeping hnswlib does not expose: which labels are live and
 * which are only marked deleted (getIdsList returns both).
 *
 * Every call into hnswlib here is synchronous on the JavaScript thread, so a resize can never run
 * alongside an add or a search (hnswlib's resize is not thread-safe). The async readIndex/writeIndex
 * run on a worker thread and are deliberately not used.
 */
export class Graph {
  readonly deleted = new Set<number>();
  /** The query as hnswlib-node takes it (a plain array), reused so a search allocates no copy. */
  private readonly point: number[];

  private constructor(
    private readonly hnsw: Hnsw,
    readonly dimension: number,
    ef: number,
    readonly live = new Set<number>(),
  ) {
    this.point = new Array<number>(dimension).fill(0);
    // hnswlib searches with max(ef, k) candidates and goes on past points marked deleted until it
    // holds that many live ones, so one search finds min(k, live) neighbours however many are deleted.
    hnsw.setEf(ef);
  }

  /** A new graph with room for `capacity` points. */
  static create(dimension: number, options: VectorIndexOptions, capacity: number): Graph {
    // 'ip' space: distance 1 - dot, i.e. cosine distance for the unit vectors the daemon stores
    // ('cosine' would normalise every vector again).
    const hnsw = new HierarchicalNSW('ip', dimension);
    hnsw.initIndex({ maxElements: Math.max(capacity, 1024), m: options.M, efConstruction: options.efConstruction });
    return new Graph(hnsw, dimension, options.ef);
  }

  /**
   * Reads a graph hnswlib saved with writeFile, in place (no copy of its bytes). hnswlib trusts
   * what it reads beyond a size check, so check the file's hash first. Throws when hnswlib finds
   * the file inconsistent.
   */
  static readFile(path: string, dimension: number, deleted: readonly number[], ef: number): Graph {
    const hnsw = new HierarchicalNSW('ip', dimension);
    hnsw.readIndexSync(path);
    // The Set constructor fills from the array natively; a loop of 100k adds in code not yet
    // optimised cost several times that at start.
    const graph = new Graph(hnsw, dimension, ef, new Set(hnsw.getIdsList()));
    for (const id of deleted) {
      graph.deleted.add(id);
      graph.live.delete(id);
    }
    return graph;
  }

  /** Writes the graph in hnswlib's format (not atomically: write a temporary file and rename it). */
  writeFile(path: string): void {
    this.hnsw.writeIndexSync(path);
  }

  get capacity(): number {
    return this.hnsw.getMaxElements();
  }

  /** Makes room for `extra` more points, growing by half again so adds rarely pay for a resize. */
  reserve(extra: number): void {
    const needed = this.hnsw.getCurrentCount() + extra;
    const capacity = this.hnsw.getMaxElements();
    if (needed > capacity) this.hnsw.resizeIndex(Math.max(needed, Math.ceil(capacity * 1.5)));
  }

  /** Adds a point, or replaces (and revives) the point with this id. */
  add(id: number, vector: Float32Array): void {
    this.reserve(1);
    this.hnsw.addPoint(Array.from(vector), id);
    this.live.add(id);
    this.deleted.delete(id);
  }

  remove(id: number): boolean {
    if (!this.live.has(id)) return false;
    this.hnsw.markDelete(id);
    this.live.delete(id);
    this.deleted.add(id);
    return true;
  }

  search(query: Float32Array, k: number): Neighbour[] {
    const want = Math.min(k, this.live.size);
    if (want === 0) return [];
    const point = this.point;
    for (let i = 0; i < point.length; i++) point[i] = query[i]!;
    const found = this.hnsw.searchKnn(point, want);
    return found.neighbors.map((referenceId, i) => ({ referenceId, distance: cosineDistance(1 - found.distances[i]!) }));
  }
}
