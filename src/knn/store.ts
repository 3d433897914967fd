import { UserError } from '../common/index.js';
import { migrate, type Db } from '../storage/index.js';

/** Who put a reference in the store: a person, the daemon itself (self-training), or another device. */
export type ReferenceSource = 'human' | 'auto' | 'peer';

const sources: readonly ReferenceSource[] = ['human', 'auto', 'peer'];

export interface NewReference {
  label: string;
  source: ReferenceSource;
  /** Where it came from: image file path, or the peer's device id. */
  origin: string;
  /** Confidence of an automatic decision; null for human references. */
  confidence?: number | null;
  /** Small encoded image, kept so a future model can re-embed the reference. */
  thumbnail?: Uint8Array | null;
  /** ms since epoch; defaults to now. */
  createdAt?: number;
}

export interface Reference {
  id: number;
  label: string;
  source: ReferenceSource;
  origin: string;
  createdAt: number;
  confidence: number | null;
  thumbnail: Buffer | null;
}

/** What list() shows of a reference: everything but its thumbnail. */
export type ReferenceInfo = Omit<Reference, 'thumbnail'>;

export interface ReferenceListOptions {
  label?: string;
  source?: ReferenceSource;
  /** Default 100. */
  limit?: number;
  offset?: number;
}

export interface ReferenceVector {
  referenceId: number;
  vector: Float32Array;
}

/** All vectors of one model key, packed for scanning: vector i is data[i*dimension .. (i+1)*dimension). */
export interface PackedVectors {
  ids: number[];
  data: Float32Array;
}

// Step i brings the knn schema to version i+1; never edit a released step, append a new one.
const schema = [
  `CREATE TABLE knn_references (
     id INTEGER PRIMARY KEY AUTOINCREMENT, -- AUTOINCREMENT: ids are never reused, so a stale index entry can never point at a new reference
     label TEXT NOT NULL,
     source TEXT NOT NULL CHECK (source IN ('human', 'auto', 'peer')),
     origin TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     confidence REAL,
     thumbnail BLOB
   );
   CREATE INDEX knn_references_label ON knn_references (label);
   CREATE TABLE knn_vectors (
     model_key TEXT NOT NULL,
     reference_id INTEGER NOT NULL REFERENCES knn_references (id),
     vector BLOB NOT NULL,
     PRIMARY KEY (model_key, reference_id)
   ) WITHOUT ROWID;
   CREATE INDEX knn_vectors_reference ON knn_vectors (reference_id);
   CREATE TABLE knn_saved_index (
     model_key TEXT PRIMARY KEY,
     dimension INTEGER NOT NULL,
     m INTEGER NOT NULL,
     ef_construction INTEGER NOT NULL,
     count INTEGER NOT NULL,
     max_reference_id INTEGER NOT NULL,
     id_checksum TEXT NOT NULL,
     deleted_ids BLOB NOT NULL,
     blob_sha256 TEXT NOT NULL,
     blob BLOB NOT NULL,
     saved_at INTEGER NOT NULL
   );`,
];

interface ReferenceRow {
  id: number;
  label: string;
  source: ReferenceSource;
  origin: string;
  created_at: number;
  confidence: number | null;
  thumbnail: Buffer | null;
}

/**
 * The references (labelled examples) and their embedding vectors, per model key, in the shared
 * SQLite database. The database is the truth; a VectorIndex is a cache of it.
 */
export class ReferenceStore {
  private readonly insertReference;
  private readonly upsertVector;
  private readonly vectorLength;
  private readonly deleteVectors;
  private readonly deleteReference;
  private readonly selectReference;
  private readonly selectLabel;
  private readonly selectVector;

  constructor(readonly db: Db) {
    migrate(db, 'knn', schema);
    this.insertReference = db.prepare(
      'INSERT INTO knn_references (label, source, origin, created_at, confidence, thumbnail) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.upsertVector = db.prepare(
      'INSERT INTO knn_vectors (model_key, reference_id, vector) VALUES (?, ?, ?) ON CONFLICT (model_key, reference_id) DO UPDATE SET vector = excluded.vector',
    );
    this.vectorLength = db.prepare('SELECT length(vector) FROM knn_vectors WHERE model_key = ? LIMIT 1').pluck();
    this.deleteVectors = db.prepare('DELETE FROM knn_vectors WHERE reference_id = ?');
    this.deleteReference = db.prepare('DELETE FROM knn_references WHERE id = ?');
    this.selectReference = db.prepare('SELECT * FROM knn_references WHERE id = ?');
    this.selectLabel = db.prepare('SELECT label FROM knn_references WHERE id = ?').pluck();
    this.selectVector = db.prepare('SELECT vector FROM knn_vectors WHERE model_key = ? AND reference_id = ?').pluck();
  }

  /** Adds one reference and its vector for `modelKey` in one transaction; returns the reference id. */
  add(reference: NewReference, modelKey: string, vector: Float32Array): number {
    return this.addMany(modelKey, [{ reference, vector }])[0]!;
  }

  /** Adds many references with their vectors in one transaction (all or none); returns their ids in order. */
  addMany(modelKey: string, items: readonly { reference: NewReference; vector: Float32Array }[]): number[] {
    return this.db.transaction(() => {
      this.checkDimension(modelKey, items.map((item) => item.vector));
      const now = Date.now();
      return items.map(({ reference, vector }) => {
        checkReference(reference);
        const info = this.insertReference.run(
          reference.label,
          reference.source,
          reference.origin,
          reference.createdAt ?? now,
          reference.confidence ?? null,
          reference.thumbnail ?? null,
        );
        const id = Number(info.lastInsertRowid);
        this.upsertVector.run(modelKey, id, vectorBytes(vector));
        return id;
      });
    })();
  }

  /** Stores vectors of existing references for `modelKey` (re-embedding after a model update), in one transaction. */
  addVectors(modelKey: string, items: readonly ReferenceVector[]): void {
    this.db.transaction(() => {
      this.checkDimension(modelKey, items.map((item) => item.vector));
      for (const { referenceId, vector } of items) this.upsertVector.run(modelKey, referenceId, vectorBytes(vector));
    })();
  }

  /** Removes a reference and all its vectors; false when it did not exist. */
  remove(id: number): boolean {
    return this.removeMany([id]) === 1;
  }

  /** Removes references and their vectors in one transaction; returns how many existed. */
  removeMany(ids: readonly number[]): number {
    return this.db.transaction(() => {
      let removed = 0;
      for (const id of ids) {
        this.deleteVectors.run(id);
        removed += this.deleteReference.run(id).changes;
      }
      return removed;
    })();
  }

  /** References that came from one origin (an event's item, an uploaded image). */
  idsOfOrigin(origin: string): number[] {
    return this.db.prepare('SELECT id FROM knn_references WHERE origin = ? ORDER BY id').pluck().all(origin) as number[];
  }

  /** Drops every vector (and the saved graph) of a model key: a refused or removed model. */
  removeVectorsOf(modelKey: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM knn_vectors WHERE model_key = ?').run(modelKey);
      this.db.prepare('DELETE FROM knn_saved_index WHERE model_key = ?').run(modelKey);
    })();
  }

  /** Model keys that have vectors stored. */
  vectorKeys(): string[] {
    return this.db.prepare('SELECT DISTINCT model_key FROM knn_vectors').pluck().all() as string[];
  }

  get(id: number): Reference | undefined {
    const row = this.selectReference.get(id) as ReferenceRow | undefined;
    return row && toReference(row);
  }

  /** Labels of the given references; ids no longer in the store are absent from the map. */
  labelsOf(ids: readonly number[]): Map<number, string> {
    const labels = new Map<number, string>();
    for (const id of ids) {
      const label = this.selectLabel.get(id) as string | undefined;
      if (label !== undefined) labels.set(id, label);
    }
    return labels;
  }

  count(): number {
    return this.db.prepare('SELECT count(*) FROM knn_references').pluck().get() as number;
  }

  /** Origins already enrolled (image paths, peer ids), so enrolling a folder twice adds nothing twice. */
  origins(): Set<string> {
    return new Set(this.db.prepare('SELECT DISTINCT origin FROM knn_references').pluck().all() as string[]);
  }

  /** Newest first, for browsing (the web UI); thumbnails are fetched one by one with get(). */
  list(options: ReferenceListOptions = {}): ReferenceInfo[] {
    const rows = this.db
      .prepare(
        `SELECT id, label, source, origin, created_at, confidence FROM knn_references
         WHERE (@label IS NULL OR label = @label) AND (@source IS NULL OR source = @source)
         ORDER BY id DESC LIMIT @limit OFFSET @offset`,
      )
      .all({ label: options.label ?? null, source: options.source ?? null, limit: options.limit ?? 100, offset: options.offset ?? 0 }) as Omit<ReferenceRow, 'thumbnail'>[];
    return rows.map((row) => ({ id: row.id, label: row.label, source: row.source, origin: row.origin, createdAt: row.created_at, confidence: row.confidence }));
  }

  countByLabel(): Map<string, number> {
    const rows = this.db.prepare('SELECT label, count(*) AS n FROM knn_references GROUP BY label ORDER BY label').all() as {
      label: string;
      n: number;
    }[];
    return new Map(rows.map((r) => [r.label, r.n]));
  }

  countBySource(): Map<ReferenceSource, number> {
    const rows = this.db.prepare('SELECT source, count(*) AS n FROM knn_references GROUP BY source ORDER BY source').all() as {
      source: ReferenceSource;
      n: number;
    }[];
    return new Map(rows.map((r) => [r.source, r.n]));
  }

  /**
   * References with no vector for `modelKey`, oldest first, in pages: pass the last id seen as
   * `afterId` to continue (so references that cannot be re-embedded do not block the rest).
   */
  listMissingVectors(modelKey: string, options: { limit?: number; afterId?: number } = {}): Reference[] {
    const rows = this.db
      .prepare(
        `SELECT r.* FROM knn_references r
         WHERE r.id > ? AND NOT EXISTS (SELECT 1 FROM knn_vectors v WHERE v.model_key = ? AND v.reference_id = r.id)
         ORDER BY r.id LIMIT ?`,
      )
      .all(options.afterId ?? 0, modelKey, options.limit ?? 1000) as ReferenceRow[];
    return rows.map(toReference);
  }

  /** Ids of the references that have a vector for `modelKey`, ascending. */
  vectorIds(modelKey: string): number[] {
    // The reference_id index holds (reference_id, model_key) and nothing else, so it answers this
    // alone; the planner would otherwise walk the primary key, i.e. read every vector (a quarter
    // second of the start with 100k references, measured by linewatch bench).
    return this.db
      .prepare('SELECT reference_id FROM knn_vectors INDEXED BY knn_vectors_reference WHERE model_key = ? ORDER BY reference_id')
      .pluck()
      .all(modelKey) as number[];
  }

  /**
   * Loads the vectors of `modelKey` (all of them, or just `ids`) into one contiguous Float32Array,
   * ascending by reference id; ids without a vector are skipped.
   */
  loadVectors(modelKey: string, dimension: number, ids?: readonly number[]): PackedVectors {
    const byteLength = dimension * 4;
    return this.db.transaction(() => {
      // One read transaction, so the count and the rows agree even if another process writes.
      const total = ids ? ids.length : (this.db.prepare('SELECT count(*) FROM knn_vectors WHERE model_key = ?').pluck().get(modelKey) as number);
      const bytes = new Uint8Array(total * byteLength);
      const out: number[] = [];
      const put = (id: number, vector: Buffer): void => {
        if (vector.length !== byteLength) {
          throw new UserError(
            `reference ${id} has a ${vector.length / 4}-dimensional vector for ${modelKey}, expected ${dimension}`,
            'bump the model version in manifest.json whenever the model changes, so old vectors are kept apart',
          );
        }
        // Copy bytes rather than view them: SQLite buffers need not be 4-byte aligned.
        bytes.set(vector, out.length * byteLength);
        out.push(id);
      };
      if (ids) {
        for (const id of [...ids].sort((a, b) => a - b)) {
          const vector = this.selectVector.get(modelKey, id) as Buffer | undefined;
          if (vector) put(id, vector);
        }
      } else {
        const rows = this.db.prepare('SELECT reference_id, vector FROM knn_vectors WHERE model_key = ? ORDER BY reference_id').raw().iterate(modelKey);
        for (const [id, vector] of rows as Iterable<[number, Buffer]>) put(id, vector);
      }
      return { ids: out, data: new Float32Array(bytes.buffer, 0, out.length * dimension) };
    })();
  }

  private checkDimension(modelKey: string, vectors: readonly Float32Array[]): void {
    const stored = this.vectorLength.get(modelKey) as number | undefined;
    const expected = stored ?? vectors[0]?.byteLength;
    for (const vector of vectors) {
      if (!(vector instanceof Float32Array) || vector.length === 0) throw new TypeError('a vector must be a non-empty Float32Array');
      if (vector.byteLength !== expected) {
        throw new UserError(
          `a ${vector.length}-dimensional vector does not fit ${modelKey}, which holds ${expected! / 4}-dimensional vectors`,
          'bump the model version in manifest.json whenever the model changes, so old vectors are kept apart',
        );
      }
    }
  }
}

function checkReference(reference: NewReference): void {
  if (!reference.label) throw new UserError('a reference needs a label', 'name the folder or pass --label');
  if (!sources.includes(reference.source)) throw new TypeError(`unknown reference source ${String(reference.source)}`);
}

function vectorBytes(vector: Float32Array): Buffer {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
}

function toReference(row: ReferenceRow): Reference {
  return {
    id: row.id,
    label: row.label,
    source: row.source,
    origin: row.origin,
    createdAt: row.created_at,
    confidence: row.confidence,
    thumbnail: row.thumbnail,
  };
}
