import { join } from 'node:path';
import { createLogger, errorText, UserError, type Logger } from '../common/index.js';
import { isDiskFull } from '../storage/index.js';
import { ExactVectors, type Neighbour } from './exact.js';
import { Graph } from './graph.js';
import { graphFolder, hashFile, removeGraphFiles, writeGraphFile } from './graph-files.js';
import { resolveVectorIndexOptions, type VectorIndexOptions } from './options.js';
import type { PackedVectors, ReferenceStore, ReferenceVector } from './store.js';

export type IndexMode = 'exact' | 'hnsw';

/**
 * Where the index came from at open: `saved` = the HNSW graph saved in the database (then brought
 * up to date with the vectors table), `rebuilt` = a new HNSW graph built from the vectors table,
 * `table` = exact mode, vectors read straight from the table (there is no graph to save or build).
 */
export type LoadedFrom = 'saved' | 'rebuilt' | 'table';

export interface VectorIndexStats {
  modelKey: string;
  dimension: number;
  mode: IndexMode;
  /** Vectors that can be found. */
  count: number;
  loadedFrom: LoadedFrom;
  /** Why a saved graph was not used (null when it was, or in exact mode). */
  rebuildReason: string | null;
  /** Vectors added to / removed from the saved graph at open to match the table. */
  reconciled: { added: number; removed: number };
  /** Points hnswlib still holds but skips (marked deleted); they go away at the next rebuild. */
  deletedInGraph: number;
  /** Points the graph has room for before it must grow. */
  capacity: number;
  loadMs: number;
}

export interface OpenVectorIndexOptions extends Partial<VectorIndexOptions> {
  modelKey: string;
  dimension: number;
  logger?: Logger;
}

interface SavedIndexRow {
  dimension: number;
  m: number;
  ef_construction: number;
  count: number;
  max_reference_id: number;
  id_checksum: string;
  deleted_ids: Buffer;
  file: string;
  file_sha256: string;
}

const noSavedIndex = 'no saved index';

/** Rebuild the graph at open once marked-deleted points exceed this share of live ones (they slow search). */
const maxDeletedShare = 0.25;

/**
 * Nearest-neighbour search over the vectors of one model key: an exact scan while the collection is
 * small, an HNSW graph (hnswlib) once it reaches `exactBelow`. The vectors table is the truth; the
 * HNSW graph is a cache of it, saved in the database so a restart does not rebuild it.
 *
 * Writes go to the ReferenceStore first, then here (add/remove), or call sync() after bulk changes.
 */
export class VectorIndex {
  readonly modelKey: string;
  readonly dimension: number;
  readonly options: VectorIndexOptions;
  private exact: ExactVectors | undefined;
  private graph: Graph | undefined;
  private dirty = false;
  private readonly info: Omit<VectorIndexStats, 'mode' | 'count' | 'deletedInGraph' | 'capacity'>;
  private readonly log: Logger;

  private constructor(
    private readonly store: ReferenceStore,
    options: OpenVectorIndexOptions,
  ) {
    const { modelKey, dimension, logger, ...rest } = options;
    if (!Number.isInteger(dimension) || dimension < 1) throw new TypeError(`invalid vector dimension ${dimension}`);
    this.modelKey = modelKey;
    this.dimension = dimension;
    this.options = resolveVectorIndexOptions(rest);
    this.log = logger ?? createLogger('knn');
    this.info = { modelKey, dimension, loadedFrom: 'table', rebuildReason: null, reconciled: { added: 0, removed: 0 }, loadMs: 0 };
  }

  /** Opens the index of `modelKey`, from the saved graph when it can be trusted, else from the vectors table. */
  static open(store: ReferenceStore, options: OpenVectorIndexOptions): VectorIndex {
    const index = new VectorIndex(store, options);
    const started = performance.now();
    index.load();
    index.info.loadMs = Math.round(performance.now() - started);
    index.log.info('vector index ready', { ...index.stats() });
    return index;
  }

  get mode(): IndexMode {
    return this.graph ? 'hnsw' : 'exact';
  }

  /** Number of vectors that can be found. */
  get size(): number {
    return this.graph ? this.graph.live.size : this.exact!.size;
  }

  stats(): VectorIndexStats {
    return {
      ...this.info,
      reconciled: { ...this.info.reconciled },
      mode: this.mode,
      count: this.size,
      deletedInGraph: this.graph?.deleted.size ?? 0,
      capacity: this.graph?.capacity ?? 0,
    };
  }

  /** Adds (or replaces) the vector of a reference already written to the store. */
  add(referenceId: number, vector: Float32Array): void {
    this.checkVector(vector);
    checkId(referenceId);
    if (this.graph) this.graph.add(referenceId, vector);
    else this.exact!.add(referenceId, vector);
    this.dirty = true;
    this.switchToGraphIfLarge();
  }

  /** Adds many vectors; an HNSW index is saved afterwards. */
  addMany(items: readonly ReferenceVector[]): void {
    for (const { referenceId, vector } of items) {
      this.checkVector(vector);
      checkId(referenceId);
    }
    if (this.graph) {
      this.graph.reserve(items.length);
      for (const { referenceId, vector } of items) this.graph.add(referenceId, vector);
    } else {
      for (const { referenceId, vector } of items) this.exact!.add(referenceId, vector);
    }
    this.dirty = true;
    if (!this.switchToGraphIfLarge() && this.graph) this.saveQuietly();
  }

  /** Stops returning a reference; false when it was not in the index. */
  remove(referenceId: number): boolean {
    const removed = this.graph ? this.graph.remove(referenceId) : this.exact!.remove(referenceId);
    if (removed) this.dirty = true;
    return removed;
  }

  /**
   * Brings the index up to date with the vectors table (after changes made straight to the store,
   * e.g. by another process); an HNSW index is saved afterwards if anything changed.
   */
  sync(): { added: number; removed: number } {
    const change = this.reconcile(this.store.vectorIds(this.modelKey));
    if (change.added + change.removed > 0 && !this.switchToGraphIfLarge() && this.graph) this.saveQuietly();
    return change;
  }

  /** The k nearest references to a unit-length query vector, nearest first (fewer when the index holds fewer). */
  search(query: Float32Array, k: number): Neighbour[] {
    this.checkVector(query);
    return this.graph ? this.graph.search(query, k) : this.exact!.search(query, k);
  }

  /**
   * Saves the HNSW graph into the database if it changed since it was loaded or saved (exact mode
   * has nothing to save and drops any stale graph). Call after bulk changes and before closing.
   */
  save(): void {
    if (!this.dirty) return;
    try {
      const folder = graphFolder(this.store.db);
      if (!this.graph) {
        this.store.db.prepare('DELETE FROM knn_saved_index WHERE model_key = ?').run(this.modelKey);
        removeGraphFiles(folder, this.modelKey);
      } else if (folder) {
        this.writeGraph(this.graph, folder);
      }
      this.dirty = false;
    } catch (err) {
      if (isDiskFull(err)) {
        throw new UserError(
          `cannot save the vector index of ${this.modelKey}: the disk is full`,
          'free space in stateDir; until then the index is rebuilt from the references at each start',
          { cause: err },
        );
      }
      throw err;
    }
  }

  private load(): void {
    const ids = this.store.vectorIds(this.modelKey);
    if (ids.length < this.options.exactBelow) {
      this.exact = new ExactVectors(this.dimension, this.store.loadVectors(this.modelKey, this.dimension));
      this.info.loadedFrom = 'table';
      // A graph saved when the collection was larger is now stale; save() drops it.
      this.dirty = this.store.db.prepare('SELECT 1 FROM knn_saved_index WHERE model_key = ?').get(this.modelKey) !== undefined;
    } else {
      const saved = this.loadSavedGraph();
      if (typeof saved !== 'string') {
        this.graph = saved.graph;
        this.info.loadedFrom = 'saved';
        // Usually the table still holds what the graph holds: then there is nothing to compare id
        // by id (two sets of 100k ids were a tenth of the start).
        const unchanged = sameIds(fingerprint(ids), saved.held);
        this.info.reconciled = unchanged ? { added: 0, removed: 0 } : this.reconcile(ids);
        if (this.graph.deleted.size > this.graph.live.size * maxDeletedShare) {
          this.rebuild(`${this.graph.deleted.size} deleted points in the graph`);
        }
      } else {
        this.rebuild(saved);
      }
    }
    this.saveQuietly();
  }

  /** The saved graph and the fingerprint of its live ids, or the reason it cannot be used. */
  private loadSavedGraph(): { graph: Graph; held: Fingerprint } | string {
    const row = this.readSavedRow();
    if (!row) return noSavedIndex;
    if (row.dimension !== this.dimension) return `saved index has dimension ${row.dimension}, expected ${this.dimension}`;
    if (row.m !== this.options.M || row.ef_construction !== this.options.efConstruction) return 'HNSW parameters changed';
    const folder = graphFolder(this.store.db);
    if (!folder) return noSavedIndex;
    const path = join(folder, row.file);
    let graph: Graph;
    try {
      // hnswlib trusts the bytes it reads (garbage can crash the process), so check them first.
      if (hashFile(path) !== row.file_sha256) return 'saved index checksum mismatch';
      const deleted = Array.from(new Uint32Array(new Uint8Array(row.deleted_ids).buffer));
      graph = Graph.readFile(path, this.dimension, deleted, this.options.ef);
    } catch (err) {
      return `saved index unreadable: ${errorText(err)}`;
    }
    const held = fingerprint(graph.live);
    if (held.count !== row.count || held.maxId !== row.max_reference_id || held.checksum !== row.id_checksum) {
      return 'saved index does not hold the references its record lists';
    }
    return { graph, held };
  }

  private rebuild(reason: string): void {
    const level = reason === noSavedIndex ? 'info' : 'warn';
    this.log[level]('building the HNSW index from the vectors table', { modelKey: this.modelKey, reason });
    const packed = this.store.loadVectors(this.modelKey, this.dimension);
    this.graph = buildGraph(this.dimension, this.options, packed);
    this.info.loadedFrom = 'rebuilt';
    this.info.rebuildReason = reason;
    this.dirty = true;
  }

  /** Makes the index hold exactly `ids` (the table's), adding missing vectors and removing extra ones. */
  private reconcile(ids: readonly number[]): { added: number; removed: number } {
    const wanted = new Set(ids);
    const held = this.graph ? this.graph.live : this.exact!.ids();
    const extra = [...held].filter((id) => !wanted.has(id));
    for (const id of extra) this.remove(id);
    const has = (id: number): boolean => (this.graph ? this.graph.live.has(id) : this.exact!.has(id));
    const missing = ids.filter((id) => !has(id));
    if (missing.length > 0) {
      const packed = this.store.loadVectors(this.modelKey, this.dimension, missing);
      if (this.graph) this.graph.reserve(packed.ids.length);
      packed.ids.forEach((id, i) => {
        const vector = packed.data.subarray(i * this.dimension, (i + 1) * this.dimension);
        if (this.graph) this.graph.add(id, vector);
        else this.exact!.add(id, vector);
      });
      this.dirty = true;
    }
    return { added: missing.length, removed: extra.length };
  }

  /** Builds the graph once the exact collection reaches `exactBelow`; true when it did (and saved it). */
  private switchToGraphIfLarge(): boolean {
    if (!this.exact || this.exact.size < this.options.exactBelow) return false;
    this.log.info('collection reached exactBelow: building the HNSW index', { modelKey: this.modelKey, count: this.exact.size });
    const graph = Graph.create(this.dimension, this.options, Math.ceil(this.exact.size * 1.5));
    for (const [id, vector] of this.exact.entries()) graph.add(id, vector);
    this.graph = graph;
    this.exact = undefined;
    this.dirty = true;
    this.saveQuietly();
    return true;
  }

  /** Automatic saves must not turn a successful change into an error: the graph is only a cache. */
  private saveQuietly(): void {
    try {
      this.save();
    } catch (err) {
      this.log.warn('could not save the vector index; it stays in memory and is saved or rebuilt later', {
        modelKey: this.modelKey,
        error: errorText(err),
      });
    }
  }

  private writeGraph(graph: Graph, folder: string): void {
    const { file, sha256 } = writeGraphFile(folder, this.modelKey, (path) => graph.writeFile(path));
    const held = fingerprint(graph.live);
    const deleted = Buffer.from(Uint32Array.from(graph.deleted).buffer);
    this.store.db
      .prepare(
        `INSERT INTO knn_saved_index (model_key, dimension, m, ef_construction, count, max_reference_id, id_checksum, deleted_ids, file, file_sha256, saved_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (model_key) DO UPDATE SET dimension = excluded.dimension, m = excluded.m, ef_construction = excluded.ef_construction,
           count = excluded.count, max_reference_id = excluded.max_reference_id, id_checksum = excluded.id_checksum,
           deleted_ids = excluded.deleted_ids, file = excluded.file, file_sha256 = excluded.file_sha256, saved_at = excluded.saved_at`,
      )
      .run(
        this.modelKey,
        this.dimension,
        this.options.M,
        this.options.efConstruction,
        held.count,
        held.maxId,
        held.checksum,
        deleted,
        file,
        sha256,
        Date.now(),
      );
    // The previous file is no longer named by the row. (A reader that read the old row just
    // before finds its file gone and rebuilds: a slower start, never a wrong graph.)
    removeGraphFiles(folder, this.modelKey, file);
  }

  private readSavedRow(): SavedIndexRow | undefined {
    return this.store.db.prepare('SELECT * FROM knn_saved_index WHERE model_key = ?').get(this.modelKey) as SavedIndexRow | undefined;
  }

  private checkVector(vector: Float32Array): void {
    if (!(vector instanceof Float32Array) || vector.length !== this.dimension) {
      throw new TypeError(`expected a Float32Array of ${this.dimension} values for ${this.modelKey}`);
    }
    let norm = 0;
    for (let i = 0; i < vector.length; i++) norm += vector[i]! * vector[i]!;
    // Distances are 1 - dot, which is cosine distance only for unit vectors.
    if (!(Math.abs(norm - 1) < 1e-3)) throw new RangeError(`vector is not L2-normalised (squared norm ${norm})`);
  }
}

function buildGraph(dimension: number, options: VectorIndexOptions, packed: PackedVectors): Graph {
  const graph = Graph.create(dimension, options, Math.ceil(packed.ids.length * 1.5));
  packed.ids.forEach((id, i) => graph.add(id, packed.data.subarray(i * dimension, (i + 1) * dimension)));
  return graph;
}

function checkId(referenceId: number): void {
  // hnswlib labels are unsigned 32-bit.
  if (!Number.isInteger(referenceId) || referenceId < 1 || referenceId > 0xffffffff) throw new RangeError(`invalid reference id ${referenceId}`);
}

interface Fingerprint {
  count: number;
  maxId: number;
  checksum: string;
}

function sameIds(a: Fingerprint, b: Fingerprint): boolean {
  return a.count === b.count && a.maxId === b.maxId && a.checksum === b.checksum;
}

/**
 * Count, largest id and an order-independent hash of a set of reference ids. It runs over 100k ids
 * at start, before V8 has optimised it: forEach (a builtin calling the closure) and int32
 * arithmetic (small integers, no heap numbers) make that about 4 ms against 30 for a for...of with
 * unsigned values. The hex is of the same bits either way, so saved records stay valid.
 */
function fingerprint(ids: readonly number[] | ReadonlySet<number>): Fingerprint {
  let maxId = 0;
  let sum = 0;
  let xor = 0;
  ids.forEach((id: number) => {
    // murmur3's 32-bit finaliser spreads neighbouring ids over the whole range.
    let h = id | 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    h ^= h >>> 16;
    sum = (sum + h) | 0;
    xor ^= h;
    if (id > maxId) maxId = id;
  });
  const count = 'size' in ids ? ids.size : ids.length;
  return { count, maxId, checksum: `${(sum >>> 0).toString(16)}-${(xor >>> 0).toString(16)}` };
}
