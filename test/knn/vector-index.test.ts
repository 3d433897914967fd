import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../../dist/common/index.js';
import { writeGraphFile } from '../../dist/knn/graph-files.js';
import { ReferenceStore, VectorIndex, type OpenVectorIndexOptions } from '../../dist/knn/index.js';
import { openDatabase, type Db } from '../../dist/storage/index.js';
import { canMountTmpfs, MiB, mountTmpfs } from '../helpers/tmpfs.js';
import { clusteredVectors, naiveNearest, quietLogger, tempFolder, unit, type LogEntry } from './helpers.js';

const model = 'fmnist-triplet@1.0.0';

let folder: ReturnType<typeof tempFolder>;
beforeAll(() => {
  folder = tempFolder();
});
afterAll(() => folder.remove());

let dbCount = 0;
function freshStore(copyOf?: string): { db: Db; store: ReferenceStore; path: string } {
  const path = join(folder.dir, `db-${++dbCount}.db`);
  if (copyOf) {
    copyFileSync(copyOf, path);
    // The saved graphs live beside the database.
    if (existsSync(`${copyOf}-hnsw`)) cpSync(`${copyOf}-hnsw`, `${path}-hnsw`, { recursive: true });
  }
  const db = openDatabase(path);
  return { db, store: new ReferenceStore(db), path };
}

function enroll(store: ReferenceStore, vectors: Float32Array[], label = 'good'): Map<number, Float32Array> {
  const ids = store.addMany(model, vectors.map((vector, i) => ({ reference: { label, source: 'human' as const, origin: `img-${i}.png` }, vector })));
  return new Map(ids.map((id, i) => [id, vectors[i]!]));
}

function open(store: ReferenceStore, dimension: number, options: Partial<OpenVectorIndexOptions> = {}): VectorIndex {
  return VectorIndex.open(store, { modelKey: model, dimension, logger: quietLogger(), ...options });
}

function recallAt(k: number, index: VectorIndex, vectors: ReadonlyMap<number, Float32Array>, queries: Float32Array[]): number {
  let hits = 0;
  for (const q of queries) {
    const truth = new Set(naiveNearest(vectors, q, k).map((n) => n.referenceId));
    for (const n of index.search(q, k)) if (truth.has(n.referenceId)) hits++;
  }
  return hits / (queries.length * k);
}

describe('VectorIndex, exact scan', () => {
  it('returns the same top-k as a naive full sort', () => {
    const { db, store } = freshStore();
    const vectors = enroll(store, clusteredVectors(3000, 20, 8, 1.5, 1));
    // Exact whatever the default threshold: this checks the scan itself.
    const index = open(store, 20, { exactBelow: 5000 });
    expect(index.stats()).toMatchObject({ mode: 'exact', loadedFrom: 'table', count: 3000 });
    for (const q of clusteredVectors(25, 20, 8, 1.5, 2)) {
      for (const k of [1, 7, 40]) {
        const got = index.search(q, k);
        const want = naiveNearest(vectors, q, k);
        expect(got.map((n) => n.referenceId)).toEqual(want.map((n) => n.referenceId));
        got.forEach((n, i) => expect(n.distance).toBeCloseTo(want[i]!.distance, 9));
      }
    }
    db.close();
  });

  it('returns fewer than k when it holds fewer, none when empty, and forgets removed vectors', () => {
    const { db, store } = freshStore();
    const index = open(store, 3);
    expect(index.search(unit([1, 0, 0]), 5)).toEqual([]);
    const ids = [...enroll(store, [unit([1, 0, 0]), unit([0, 1, 0]), unit([0, 0, 1])]).keys()];
    expect(index.sync()).toEqual({ added: 3, removed: 0 });
    expect(index.search(unit([1, 0.1, 0]), 5).map((n) => n.referenceId)).toEqual([ids[0], ids[1], ids[2]]);
    expect(index.remove(ids[0]!)).toBe(true);
    expect(index.search(unit([1, 0.1, 0]), 5).map((n) => n.referenceId)).toEqual([ids[1], ids[2]]);
    db.close();
  });

  it('removing a vector from the middle moves the last one into its place, vector and id together', () => {
    // The first and the last slot are special cases of the move; a middle one checks its offsets.
    const { db, store } = freshStore();
    const index = open(store, 3);
    const vectors = [unit([1, 0, 0]), unit([0, 1, 0]), unit([0, 0, 1]), unit([1, 1, 0]), unit([0, 1, 1])];
    const ids = [...enroll(store, vectors).keys()];
    index.sync();
    expect(index.remove(ids[2]!)).toBe(true);
    for (const i of [0, 1, 3, 4]) {
      const nearest = index.search(vectors[i]!, 4);
      expect(nearest[0]).toEqual({ referenceId: ids[i], distance: expect.closeTo(0, 6) });
      expect(nearest.map((n) => n.referenceId).sort()).toEqual([ids[0], ids[1], ids[3], ids[4]].sort());
    }
    db.close();
  });

  it('replaces the vector of an id it holds, ignores removing one it does not, syncs nothing twice, and breaks ties by age', () => {
    const { db, store } = freshStore();
    const index = open(store, 3);
    const ids = [...enroll(store, [unit([1, 0, 0]), unit([1, 0, 0]), unit([0, 0, 1])]).keys()];
    expect(index.sync()).toEqual({ added: 3, removed: 0 });
    expect(index.sync()).toEqual({ added: 0, removed: 0 });
    // Equal distances: the reference added first comes first, as in a stable sort.
    expect(index.search(unit([1, 0, 0]), 1)[0]!.referenceId).toBe(ids[0]);
    expect(index.search(unit([1, 0, 0]), 2).map((n) => n.referenceId)).toEqual([ids[0], ids[1]]);
    index.add(ids[2]!, unit([0, 1, 0]));
    expect(index.size).toBe(3);
    expect(index.search(unit([0, 1, 0]), 1)[0]).toEqual({ referenceId: ids[2], distance: expect.closeTo(0, 6) });
    expect(index.remove(99_999)).toBe(false);
    expect(index.size).toBe(3);
    expect(index.search(unit([0, 0, 1]), 3).map((n) => n.referenceId).sort()).toEqual([...ids].sort());
    db.close();
  });

  it('refuses vectors that are not unit length or of the wrong dimension', () => {
    const { db, store } = freshStore();
    const index = open(store, 3);
    expect(() => index.add(1, new Float32Array([1, 1, 0]))).toThrow(/L2-normalised/);
    expect(() => index.search(unit([1, 0]), 1)).toThrow(/3 values/);
    db.close();
  });
});

describe('VectorIndex, HNSW', () => {
  const dimension = 32;
  // Large enough for a graph with several layers, small enough that a rebuild is quick under
  // mutation testing (npm run mutate); recall at 100k references is measured by `linewatch bench`.
  const count = 1000;
  // Wide clusters that overlap, so that nearest neighbours are not trivially found.
  const vectors = clusteredVectors(count, dimension, 25, 3, 11);
  const queries = clusteredVectors(200, dimension, 25, 3, 12);
  let saved: string; // a database holding the references and their saved HNSW index
  let byId: Map<number, Float32Array>;
  let firstResults: number[][];

  beforeAll(() => {
    const { db, store, path } = freshStore();
    byId = enroll(store, vectors);
    const index = open(store, dimension, { exactBelow: 300 });
    expect(index.stats()).toMatchObject({ mode: 'hnsw', loadedFrom: 'rebuilt', rebuildReason: 'no saved index', count });
    firstResults = queries.map((q) => index.search(q, 10).map((n) => n.referenceId));
    db.close();
    saved = path;
  });

  it('has recall@10 >= 0.95 against exact search on clustered vectors', () => {
    const { db, store } = freshStore(saved);
    const index = open(store, dimension, { exactBelow: 300 });
    const recall = recallAt(10, index, byId, queries);
    console.log(`HNSW recall@10 on ${count} clustered 32-d vectors (M 16, efConstruction 200, ef 48): ${recall.toFixed(4)}`);
    expect(recall).toBeGreaterThanOrEqual(0.95);
    db.close();
  });

  it('reopens from the saved index without rebuilding and gives the same results', () => {
    const { db, store } = freshStore(saved);
    const lines: string[] = [];
    const index = open(store, dimension, { exactBelow: 300, logger: quietLogger(lines) });
    expect(index.stats()).toMatchObject({ loadedFrom: 'saved', rebuildReason: null, reconciled: { added: 0, removed: 0 }, count });
    expect(lines.some((l) => l.includes('building'))).toBe(false);
    expect(queries.map((q) => index.search(q, 10).map((n) => n.referenceId))).toEqual(firstResults);
    db.close();
  });

  it('adds the rows written after the save, and stops returning the rows removed since', () => {
    const { db, store } = freshStore(saved);
    const added = enroll(store, clusteredVectors(40, dimension, 5, 3, 13), 'dent');
    const removed = [...byId.keys()].filter((id) => id % 50 === 0);
    store.removeMany(removed);
    db.close();

    const reopened = freshStore(join(folder.dir, `db-${dbCount}.db`));
    const index = open(reopened.store, dimension, { exactBelow: 300 });
    expect(index.stats()).toMatchObject({
      loadedFrom: 'saved',
      reconciled: { added: 40, removed: removed.length },
      count: count + 40 - removed.length,
      deletedInGraph: removed.length,
    });
    for (const [id, v] of added) expect(index.search(v, 1)[0]).toMatchObject({ referenceId: id, distance: expect.closeTo(0, 5) });
    const gone = new Set(removed);
    for (const id of removed) expect(index.search(byId.get(id)!, 10).some((n) => gone.has(n.referenceId))).toBe(false);

    // The reconciled index was saved: the next start has nothing left to do.
    reopened.db.close();
    const again = freshStore(join(folder.dir, `db-${dbCount}.db`));
    expect(open(again.store, dimension, { exactBelow: 300 }).stats()).toMatchObject({ loadedFrom: 'saved', reconciled: { added: 0, removed: 0 } });
    again.db.close();
  });

  it('keeps run-time removals across a save and a restart', () => {
    const { db, store, path } = freshStore(saved);
    const index = open(store, dimension, { exactBelow: 300 });
    const victims = [11, 12, 13];
    store.removeMany(victims);
    for (const id of victims) expect(index.remove(id)).toBe(true);
    index.save();
    db.close();
    const again = freshStore(path);
    const reopened = open(again.store, dimension, { exactBelow: 300 });
    expect(reopened.stats()).toMatchObject({ loadedFrom: 'saved', reconciled: { added: 0, removed: 0 }, deletedInGraph: 3 });
    for (const id of victims) expect(reopened.search(byId.get(id)!, 5).map((n) => n.referenceId)).not.toContain(id);
    again.db.close();
  });

  /** Changes the saved graph file's bytes; with `rehash`, the record's checksum follows, so only hnswlib can notice. */
  const damageGraphFile = (db: Db, change: (bytes: Buffer) => Buffer, rehash: boolean) => {
    const { file } = db.prepare('SELECT file FROM knn_saved_index').get() as { file: string };
    const path = join(`${db.name}-hnsw`, file);
    const bytes = change(readFileSync(path));
    writeFileSync(path, bytes);
    if (rehash) db.prepare('UPDATE knn_saved_index SET file_sha256 = ?').run(createHash('sha256').update(bytes).digest('hex'));
  };
  /** hnswlib's layout: a 96-byte header (cur_element_count at 16, size_data_per_element at 24), the level-0 block, then each point's link list size. */
  const firstLinkListSize = (b: Buffer) => 96 + Number(b.readBigUInt64LE(16)) * Number(b.readBigUInt64LE(24));
  it.each([
    ['a flipped byte', (db: Db) => damageGraphFile(db, (b) => (b.writeUInt8(b[5000]! ^ 0x5a, 5000), b), false), /checksum/],
    ['a truncated file with a matching checksum', (db: Db) => damageGraphFile(db, (b) => b.subarray(0, b.length >> 1), true), /unreadable/],
    // What hnswlib's own integrity pass must refuse (deploy/hnswlib-loader.mjs rewrote it to count the position itself).
    ['a file cut short inside its link lists, checksum matching', (db: Db) => damageGraphFile(db, (b) => b.subarray(0, b.length - 3), true), /unreadable/],
    ['a link list size reaching past the end, checksum matching', (db: Db) => damageGraphFile(db, (b) => (b.writeUInt32LE(0x7fffffff, firstLinkListSize(b)), b), true), /unreadable/],
    ['a missing file', (db: Db) => db.exec(`UPDATE knn_saved_index SET file = 'gone.hnsw'`), /unreadable.*ENOENT/],
    ['a record that does not match the graph', (db: Db) => db.exec(`UPDATE knn_saved_index SET id_checksum = 'feed-beef'`), /does not hold/],
    ['another dimension', (db: Db) => db.exec(`UPDATE knn_saved_index SET dimension = 64`), /dimension/],
  ])('rebuilds from the table, without crashing, on %s', (_what, corrupt, reason) => {
    const { db, store } = freshStore(saved);
    corrupt(db);
    const index = open(store, dimension, { exactBelow: 300 });
    expect(index.stats()).toMatchObject({ loadedFrom: 'rebuilt', count });
    expect(index.stats().rebuildReason).toMatch(reason);
    expect(recallAt(10, index, byId, queries.slice(0, 50))).toBeGreaterThanOrEqual(0.95);
    db.close();
  });

});

describe('VectorIndex, HNSW, what it removes and finds', () => {
  const dimension = 16;

  it('finds the live neighbours among many deleted points, at their true distances', () => {
    // 990 of 1000 points deleted: hnswlib searches on past deleted points until it holds ef live ones (or has seen them all).
    const { db, store } = freshStore();
    const byId = enroll(store, clusteredVectors(1000, dimension, 4, 2, 61));
    const index = open(store, dimension, { exactBelow: 0 });
    const ids = [...byId.keys()];
    for (const id of ids.slice(0, 990)) index.remove(id);
    const live = new Map(ids.slice(990).map((id) => [id, byId.get(id)!]));
    const query = byId.get(ids[0]!)!;
    const found = index.search(query, 10);
    const truth = naiveNearest(live, query, 10);
    expect(found.map((n) => n.referenceId)).toEqual(truth.map((n) => n.referenceId));
    found.forEach((n, i) => expect(n.distance).toBeCloseTo(truth[i]!.distance, 5));
    expect(index.search(query, 3)).toEqual(found.slice(0, 3));
    db.close();
  });

  it('finds nothing in an empty graph, and ignores removing an id it does not hold or holds no longer', () => {
    const { db, store } = freshStore();
    const index = open(store, dimension, { exactBelow: 0 });
    expect(index.mode).toBe('hnsw');
    const v = clusteredVectors(1, dimension, 1, 2, 62)[0]!;
    expect(index.search(v, 3)).toEqual([]);
    const [id] = store.addMany(model, [{ reference: { label: 'good', source: 'human', origin: 'one' }, vector: v }]);
    index.add(id!, v);
    expect(index.remove(id! + 1)).toBe(false);
    expect(index.remove(id!)).toBe(true);
    expect(index.remove(id!)).toBe(false);
    expect(index.search(v, 3)).toEqual([]);
    db.close();
  });
});

describe('VectorIndex, growing', () => {
  it('switches from exact scan to HNSW when it reaches exactBelow, and saves the graph', () => {
    const dimension = 16;
    const { db, store, path } = freshStore();
    const index = open(store, dimension, { exactBelow: 300 });
    const first = clusteredVectors(299, dimension, 4, 2, 31);
    const firstIds = store.addMany(model, first.map((vector, i) => ({ reference: { label: 'good', source: 'human' as const, origin: `${i}` }, vector })));
    index.addMany(firstIds.map((referenceId, i) => ({ referenceId, vector: first[i]! })));
    expect(index.mode).toBe('exact');
    const more = clusteredVectors(200, dimension, 4, 2, 32);
    const moreIds = store.addMany(model, more.map((vector, i) => ({ reference: { label: 'good', source: 'auto' as const, origin: `${i}` }, vector })));
    index.addMany(moreIds.map((referenceId, i) => ({ referenceId, vector: more[i]! })));
    expect(index.stats()).toMatchObject({ mode: 'hnsw', count: 499 });
    expect(index.search(more[5]!, 1)[0]!.referenceId).toBe(moreIds[5]);
    db.close();
    const again = freshStore(path);
    expect(open(again.store, dimension, { exactBelow: 300 }).stats()).toMatchObject({ mode: 'hnsw', loadedFrom: 'saved', count: 499 });
    again.db.close();
  });
});

describe('VectorIndex, growing at exactly exactBelow', () => {
  it('switches at the vector that reaches exactBelow, sizes the graph half again as large, and logs it', () => {
    const dimension = 4;
    const { db, store } = freshStore();
    const entries: LogEntry[] = [];
    const index = open(store, dimension, { exactBelow: 700, logger: quietLogger([], entries) });
    const vectors = clusteredVectors(700, dimension, 4, 2, 63);
    const ids = store.addMany(model, vectors.map((vector, i) => ({ reference: { label: 'good', source: 'human' as const, origin: `${i}` }, vector })));
    index.addMany(ids.slice(0, 699).map((referenceId, i) => ({ referenceId, vector: vectors[i]! })));
    expect(index.mode).toBe('exact');
    index.add(ids[699]!, vectors[699]!);
    expect(index.stats()).toMatchObject({ mode: 'hnsw', count: 700, capacity: 1050 });
    expect(entries.filter((e) => e.msg.startsWith('collection reached'))).toEqual([
      { level: 'info', msg: 'collection reached exactBelow: building the HNSW index', fields: { modelKey: model, count: 700 } },
    ]);
    db.close();
  });
});

describe('VectorIndex, what it refuses and when it saves or rebuilds', () => {
  // A small graph (exactBelow 0: HNSW from the first vector), so every test here is quick.
  const dimension = 8;
  function graphStore(count: number): { db: Db; store: ReferenceStore; path: string; byId: Map<number, Float32Array> } {
    const fresh = freshStore();
    return { ...fresh, byId: enroll(fresh.store, clusteredVectors(count, dimension, 3, 2, 41)) };
  }
  /** The same database file again, as after a restart. */
  const reopen = (path: string, options: Partial<OpenVectorIndexOptions> = {}) => {
    const db = openDatabase(path);
    return { db, index: open(new ReferenceStore(db), dimension, { exactBelow: 0, ...options }) };
  };
  const savedRows = (db: Db) => (db.prepare('SELECT count(*) AS n FROM knn_saved_index').get() as { n: number }).n;
  const graphFiles = (path: string) => (existsSync(`${path}-hnsw`) ? readdirSync(`${path}-hnsw`) : []);

  it('refuses a bad dimension, ids hnswlib cannot label and vectors that are not Float32Array', () => {
    const { db, store } = freshStore();
    expect(() => open(store, 0)).toThrow('invalid vector dimension 0');
    expect(() => open(store, 2.5)).toThrow('invalid vector dimension 2.5');
    const index = open(store, 3);
    const v = unit([1, 0, 0]);
    for (const id of [0, -1, 1.5, 2 ** 32]) expect(() => index.add(id, v)).toThrow(`invalid reference id ${id}`);
    expect(() => index.addMany([{ referenceId: 7, vector: v }, { referenceId: 0, vector: v }])).toThrow('invalid reference id 0');
    expect(index.size).toBe(0);
    expect(() => index.add(1, Float64Array.from(v) as unknown as Float32Array)).toThrow(/Float32Array of 3 values/);
    index.add(1, v);
    index.add(0xffffffff, unit([0, 1, 0]));
    expect(index.search(unit([0, 1, 0]), 1)[0]!.referenceId).toBe(0xffffffff);
    db.close();
  });

  it('drops a saved graph once the collection is below exactBelow again', () => {
    const { db, path } = graphStore(60);
    db.close();
    const first = reopen(path);
    expect(first.index.stats()).toMatchObject({ mode: 'hnsw', loadedFrom: 'rebuilt', rebuildReason: 'no saved index' });
    expect(savedRows(first.db)).toBe(1);
    first.db.close();
    const exact = reopen(path, { exactBelow: 1000 });
    expect(exact.index.stats()).toMatchObject({ mode: 'exact', loadedFrom: 'table', count: 60 });
    expect(savedRows(exact.db)).toBe(0);
    expect(graphFiles(path)).toEqual([]);
    exact.db.close();
  });

  it('removes the saved graph file with the vectors of a model', () => {
    const { db, store, path } = graphStore(60);
    open(store, dimension, { exactBelow: 0 });
    expect(graphFiles(path)).toHaveLength(1);
    store.removeVectorsOf(model);
    expect(savedRows(db)).toBe(0);
    expect(graphFiles(path)).toEqual([]);
    db.close();
  });

  it('logs a first build at info and the rebuild of a saved graph it cannot use at warn, each with its reason', () => {
    const { db, path } = graphStore(60);
    db.close();
    const entries: LogEntry[] = [];
    const building = (reason: string, level: LogEntry['level']) => ({ level, msg: 'building the HNSW index from the vectors table', fields: { modelKey: model, reason } });
    reopen(path, { logger: quietLogger([], entries) }).db.close();
    expect(entries.filter((e) => e.msg.startsWith('building'))).toEqual([building('no saved index', 'info')]);
    expect(entries.at(-1)).toMatchObject({ level: 'info', msg: 'vector index ready', fields: { modelKey: model, mode: 'hnsw', loadedFrom: 'rebuilt', count: 60 } });
    entries.length = 0;
    reopen(path, { M: 8, logger: quietLogger([], entries) }).db.close();
    expect(entries.filter((e) => e.msg.startsWith('building'))).toEqual([building('HNSW parameters changed', 'warn')]);
  });

  it('makes room for at least 1024 points, and grows by half again when full', () => {
    const { db, store } = graphStore(60);
    const index = open(store, dimension, { exactBelow: 0 });
    expect(index.stats().capacity).toBe(1024);
    const more = clusteredVectors(965, dimension, 3, 2, 44);
    const ids = store.addMany(model, more.map((vector, i) => ({ reference: { label: 'good', source: 'human' as const, origin: `m-${i}` }, vector })));
    index.addMany(ids.slice(0, 964).map((referenceId, i) => ({ referenceId, vector: more[i]! })));
    expect(index.stats()).toMatchObject({ count: 1024, capacity: 1024 });
    index.add(ids[964]!, more[964]!);
    expect(index.stats()).toMatchObject({ count: 1025, capacity: 1536 });
    db.close();
  });

  it('rebuilds when the HNSW parameters changed since the save', () => {
    const { db, path } = graphStore(60);
    db.close();
    reopen(path).db.close();
    for (const changed of [{ M: 8 }, { efConstruction: 100 }]) {
      const again = reopen(path, changed);
      expect(again.index.stats()).toMatchObject({ loadedFrom: 'rebuilt', rebuildReason: 'HNSW parameters changed', count: 60 });
      again.db.close();
      // Saved with the new parameters: the next start with them loads it.
      const next = reopen(path, changed);
      expect(next.index.stats()).toMatchObject({ loadedFrom: 'saved' });
      next.db.close();
      reopen(path).db.close();
    }
  });

  it('rebuilds at open once deleted points are more than a quarter of the live ones', () => {
    for (const [removed, expected] of [
      [12, { loadedFrom: 'saved', deletedInGraph: 12, count: 48 }], // 12 of 48: a quarter, kept
      [13, { loadedFrom: 'rebuilt', rebuildReason: '13 deleted points in the graph', deletedInGraph: 0, count: 47 }],
    ] as const) {
      const { db, store, path, byId } = graphStore(60);
      const index = open(store, dimension, { exactBelow: 0 });
      const victims = [...byId.keys()].slice(0, removed);
      store.removeMany(victims);
      for (const id of victims) index.remove(id);
      index.save();
      db.close();
      const again = reopen(path);
      expect(again.index.stats()).toMatchObject(expected);
      again.db.close();
    }
  });

  it('saves at sync() only when the table changed, and at save() only what changed since the last save', () => {
    const { db, store, path, byId } = graphStore(60);
    const index = open(store, dimension, { exactBelow: 0 });
    // Every save writes a new file and renames it over the old name, even with the same bytes.
    const written = () => {
      const { file } = db.prepare('SELECT file FROM knn_saved_index').get() as { file: string };
      return statSync(join(`${path}-hnsw`, file)).ino;
    };
    const first = written();
    expect(index.sync()).toEqual({ added: 0, removed: 0 });
    index.save();
    expect(written()).toBe(first);
    // A change made here is saved by save(), not by a sync() that finds the table unchanged.
    const [id, vector] = [...byId][0]!;
    index.add(id, vector);
    expect(index.sync()).toEqual({ added: 0, removed: 0 });
    expect(written()).toBe(first);
    index.save();
    const second = written();
    expect(second).not.toBe(first);
    // One reference removed and one added in the table: a change, though the count stays.
    store.removeMany([id]);
    enroll(store, clusteredVectors(1, dimension, 1, 2, 64), 'dent');
    expect(index.sync()).toEqual({ added: 1, removed: 1 });
    expect(written()).not.toBe(second);
    db.close();
  });

  it('saves the graph after sync() and addMany() change it, so the next start loads it as is', () => {
    const { db, store, path } = graphStore(60);
    const index = open(store, dimension, { exactBelow: 0 });
    const savedBlob = () => (db.prepare('SELECT file_sha256 FROM knn_saved_index').get() as { file_sha256: string }).file_sha256;
    const opened = savedBlob();
    enroll(store, clusteredVectors(5, dimension, 1, 2, 42), 'dent');
    expect(index.sync()).toEqual({ added: 5, removed: 0 });
    const synced = savedBlob();
    expect(synced).not.toBe(opened);
    const extra = clusteredVectors(3, dimension, 1, 2, 43);
    const ids = store.addMany(model, extra.map((vector, i) => ({ reference: { label: 'dent', source: 'human' as const, origin: `x-${i}` }, vector })));
    index.addMany(ids.map((referenceId, i) => ({ referenceId, vector: extra[i]! })));
    expect(savedBlob()).not.toBe(synced);
    // Only the file the record names is left: each save removes the one before.
    expect(graphFiles(path)).toEqual([`${encodeURIComponent(model)}.${savedBlob().slice(0, 16)}.hnsw`]);
    db.close();
    const again = reopen(path);
    expect(again.index.stats()).toMatchObject({ loadedFrom: 'saved', reconciled: { added: 0, removed: 0 }, count: 68 });
    again.db.close();
  });
});

describe('VectorIndex, its saved graph files', () => {
  const dimension = 8;
  const enrollAs = (store: ReferenceStore, modelKey: string, count: number, seed: number) =>
    store.addMany(modelKey, clusteredVectors(count, dimension, 3, 2, seed).map((vector, i) => ({ reference: { label: 'good', source: 'human' as const, origin: `${modelKey}-${i}` }, vector })));
  const openAs = (store: ReferenceStore, modelKey: string, logger = quietLogger()) => VectorIndex.open(store, { modelKey, dimension, exactBelow: 0, logger });
  const record = (db: Db, modelKey = model) =>
    db.prepare('SELECT file, file_sha256, saved_at, id_checksum FROM knn_saved_index WHERE model_key = ?').get(modelKey) as { file: string; file_sha256: string; saved_at: number; id_checksum: string };

  it('names the file by its content hash, keeps it private, leaves no temporary file, and rewrites nothing at a start that finds it up to date', () => {
    const { db, store, path } = freshStore();
    enrollAs(store, model, 60, 51);
    openAs(store, model);
    const saved = record(db);
    const file = join(`${path}-hnsw`, saved.file);
    expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(saved.file_sha256);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(readdirSync(`${path}-hnsw`)).toEqual([saved.file]);
    // A rewrite, even of the same bytes, would be a new file renamed over this one.
    const written = statSync(file).ino;
    db.close();
    const again = openDatabase(path);
    expect(openAs(new ReferenceStore(again), model).stats()).toMatchObject({ loadedFrom: 'saved', reconciled: { added: 0, removed: 0 } });
    expect(record(again)).toEqual(saved);
    expect(statSync(file).ino).toBe(written);
    again.close();
  });

  it('writes the same id checksum as the versions before it, so an upgrade keeps trusting saved graphs', () => {
    // The checksum (the sum and the xor of murmur3's finaliser of each id) is part of the saved
    // record's format: a changed hash would make every graph saved before an upgrade look stale.
    // The value was checked against an independent implementation of fmix32.
    const { db, store } = freshStore();
    expect(enrollAs(store, model, 60, 52)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    openAs(store, model);
    expect(record(db).id_checksum).toBe('85002fed-860736a9');
    expect(db.prepare('SELECT count, max_reference_id FROM knn_saved_index').get()).toEqual({ count: 60, max_reference_id: 60 });
    db.close();
  });

  it('removes only the graph files of the model whose vectors are dropped, whatever its key holds', () => {
    // `am.1@1`'s file pattern must not match `cam.1@1` (anchored) nor `am-1@1` (the dot escaped).
    const { db, store, path } = freshStore();
    const keys = ['am.1@1', 'cam.1@1', 'am-1@1'];
    keys.forEach((key, i) => {
      enrollAs(store, key, 20, 53 + i);
      openAs(store, key);
    });
    const files = Object.fromEntries(keys.map((key) => [key, record(db, key).file]));
    expect(readdirSync(`${path}-hnsw`).sort()).toEqual(Object.values(files).sort());
    store.removeVectorsOf('am.1@1');
    expect(readdirSync(`${path}-hnsw`).sort()).toEqual([files['cam.1@1'], files['am-1@1']].sort());
    db.close();
    const again = freshStore(path);
    for (const key of ['cam.1@1', 'am-1@1']) expect(openAs(again.store, key).stats()).toMatchObject({ loadedFrom: 'saved', count: 20 });
    again.db.close();
  });

  it('closes every descriptor a save opens', () => {
    const { db, store } = freshStore();
    const ids = enrollAs(store, model, 20, 58);
    const index = openAs(store, model);
    const open = () => readdirSync('/proc/self/fd').length;
    const before = open();
    for (const id of ids.slice(0, 5)) {
      store.removeMany([id]);
      index.sync();
    }
    expect(db.prepare('SELECT count FROM knn_saved_index').pluck().get()).toBe(15);
    expect(open()).toBe(before);
    db.close();
  });

  it('drops the vectors of a model that never had a saved graph', () => {
    const { db, store, path } = freshStore();
    enrollAs(store, model, 20, 59);
    store.removeVectorsOf(model);
    expect(store.vectorKeys()).toEqual([]);
    expect(existsSync(`${path}-hnsw`)).toBe(false);
    db.close();
  });

  it('a save that fails for another reason than a full disk says that reason', () => {
    const { db, store, path } = freshStore();
    enrollAs(store, model, 20, 60);
    writeFileSync(`${path}-hnsw`, 'not a folder');
    const index = openAs(store, model);
    let refused: unknown;
    try {
      index.save();
    } catch (err) {
      refused = err;
    }
    expect(refused).toMatchObject({ message: `cannot make the folder ${path}-hnsw: a file is in the way`, hint: 'point stateDir at a folder, or move that file away' });
    db.close();
  });

  it('saves nothing for an in-memory database', () => {
    const db = openDatabase(':memory:');
    const store = new ReferenceStore(db);
    enrollAs(store, model, 20, 56);
    const index = openAs(store, model);
    expect(index.stats()).toMatchObject({ mode: 'hnsw', count: 20 });
    index.save();
    expect(db.prepare('SELECT count(*) AS n FROM knn_saved_index').pluck().get()).toBe(0);
    expect(existsSync(':memory:-hnsw')).toBe(false);
    db.close();
  });
});

describe('VectorIndex saves on a full disk', () => {
  it('a graph file whose write fails leaves nothing behind', () => {
    // hnswlib throws when it cannot open or write its file (a folder it may not write, say).
    const dir = join(folder.dir, 'failed-write');
    expect(() =>
      writeGraphFile(dir, model, (path) => {
        writeFileSync(path, 'half a graph');
        throw new Error('cannot write the index');
      }),
    ).toThrow('cannot write the index');
    expect(readdirSync(dir)).toEqual([]);
  });

  it.skipIf(!canMountTmpfs)('keeps a change in memory when its automatic save fails, refuses an explicit save by name, and saves once there is room (a real 8 MiB tmpfs; needs root)', () => {
    const dimension = 8;
    const disk = mountTmpfs(8 * MiB);
    try {
      const path = join(disk.path, 'linewatch.db');
      const db = openDatabase(path);
      const store = new ReferenceStore(db);
      const vectors = clusteredVectors(500, dimension, 3, 2, 57);
      const enrollSome = (from: number, to: number) =>
        store
          .addMany(model, vectors.slice(from, to).map((vector, i) => ({ reference: { label: 'good', source: 'human' as const, origin: `${from + i}` }, vector })))
          .map((referenceId, i) => ({ referenceId, vector: vectors[from + i]! }));
      enrollSome(0, 300);
      const lines: string[] = [];
      const entries: LogEntry[] = [];
      const index = open(store, dimension, { exactBelow: 0, logger: quietLogger(lines, entries) });
      const good = db.prepare('SELECT * FROM knn_saved_index').get();
      const rest = enrollSome(300, 500);

      // Someone else takes the rest of the disk; the references are written to the table first.
      const other = join(disk.path, 'other');
      writeFileSync(other, Buffer.alloc(disk.free(), 1));
      index.addMany(rest);
      expect(entries.at(-1)).toEqual({
        level: 'warn',
        msg: 'could not save the vector index; it stays in memory and is saved or rebuilt later',
        fields: { modelKey: model, error: `cannot save the vector index of ${model}: the disk is full` },
      });
      expect(index.search(rest[0]!.vector, 1)[0]!.referenceId).toBe(rest[0]!.referenceId);
      let refused: unknown;
      try {
        index.save();
      } catch (err) {
        refused = err;
      }
      expect(refused).toBeInstanceOf(UserError);
      expect(refused).toMatchObject({
        message: `cannot save the vector index of ${model}: the disk is full`,
        hint: 'free space in stateDir; until then the index is rebuilt from the references at each start',
        cause: expect.objectContaining({ code: 'SQLITE_FULL' }),
      });
      expect(db.prepare('SELECT * FROM knn_saved_index').get()).toEqual(good);

      rmSync(other);
      index.save();
      const saved = db.prepare('SELECT file, count FROM knn_saved_index').get() as { file: string; count: number };
      expect(saved.count).toBe(500);
      // The file the failed save left (hnswlib writes what fits without an error) went with the next save.
      expect(readdirSync(`${path}-hnsw`)).toEqual([saved.file]);
      db.close();
      const again = openDatabase(path);
      expect(open(new ReferenceStore(again), dimension, { exactBelow: 0 }).stats()).toMatchObject({ loadedFrom: 'saved', reconciled: { added: 0, removed: 0 }, count: 500 });
      again.close();
    } finally {
      disk.unmount();
    }
  });
});
