import { UserError } from '../common/index.js';
import { migrate, type Db } from '../storage/index.js';
import { graphFolder, removeGraphFiles } from './graph-files.js';

/** Who put a reference in the store: a person, the daemon itself (self-training), or another device. */
export type ReferenceSource = 'human' | 'auto' | 'peer';

const sources: readonly ReferenceSource[] = ['human', 'auto', 'peer'];

/** Where a reference came from, beyond its source; null where not known (references older than provenance). */
export interface Provenance {
  /** The model whose vector the reference was added with (add()'s modelKey). */
  modelKey: string | null;
  /** The device that added it: its fleet device id (`sync.deviceId`, else the MQTT client id), or the peer's. */
  device: string | null;
  /** What admitted an automatic reference: its frame, score and the neighbours that agreed (JSON). */
  decision: string | null;
  /** Who labeled a human reference: the control API caller (`cli`, `mqtt`, `http`, `ui`, ...), or `enroll` for a folder. */
  labeledBy: string | null;
  /** ms since epoch an automatic reference was confirmed (a later admission leaned on it, or a person gave its label); null: it expires. */
  confirmedAt: number | null;
}

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
  /** Defaults to the store's own device. */
  device?: string | null;
  decision?: string | null;
  labeledBy?: string | null;
  confirmedAt?: number | null;
}

export interface Reference extends Provenance {
  id: number;
  label: string;
  source: ReferenceSource;
  origin: string;
  createdAt: number;
  confidence: number | null;
  thumbnail: Buffer | null;
}

/** One entry of the journal of additions and removals (reference sync, audits): in commit order. */
export interface ReferenceChange {
  /** Increases with every change; pass the last one seen to changesSince() to continue. */
  seq: number;
  referenceId: number;
  change: 'added' | 'removed';
  label: string;
  source: ReferenceSource;
  origin: string;
  /** ms since epoch of the change. */
  at: number;
}

export type ReferenceChangeListener = (changes: readonly ReferenceChange[]) => void;

/** What list() shows of a reference: everything but its thumbnail. */
export type ReferenceInfo = Omit<Reference, 'thumbnail'>;

export interface ReferenceFilter {
  label?: string;
  source?: ReferenceSource;
  /** Only references created before / after these times (ms since epoch). */
  createdBefore?: number;
  createdAfter?: number;
  /** Only automatic references not confirmed yet (true) or confirmed (false). */
  unconfirmed?: boolean;
  /**
   * Only references self-training admitted, here or on a peer (true: `auto`, and `peer` ones no
   * person labeled), or only the others (false): the caps and a person's label treat them alike.
   */
  automatic?: boolean;
}

export interface ReferenceListOptions extends ReferenceFilter {
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
  // Provenance on every reference, and the journal of additions and removals (reference sync).
  `ALTER TABLE knn_references ADD COLUMN model_key TEXT;
   ALTER TABLE knn_references ADD COLUMN device TEXT;
   ALTER TABLE knn_references ADD COLUMN decision TEXT;
   ALTER TABLE knn_references ADD COLUMN labeled_by TEXT;
   ALTER TABLE knn_references ADD COLUMN confirmed_at INTEGER;
   CREATE INDEX knn_references_source ON knn_references (source, label, created_at);
   CREATE TABLE knn_reference_changes (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     reference_id INTEGER NOT NULL,
     change TEXT NOT NULL CHECK (change IN ('added', 'removed')),
     label TEXT NOT NULL,
     source TEXT NOT NULL,
     origin TEXT NOT NULL,
     at INTEGER NOT NULL
   );`,
  // The saved HNSW graph moves from a blob into a file beside the database (graph-files.ts), which
  // hnswlib reads without a copy. Saved graphs are a cache of knn_vectors: the next start rebuilds them.
  `DROP TABLE knn_saved_index;
   CREATE TABLE knn_saved_index (
     model_key TEXT PRIMARY KEY,
     dimension INTEGER NOT NULL,
     m INTEGER NOT NULL,
     ef_construction INTEGER NOT NULL,
     count INTEGER NOT NULL,
     max_reference_id INTEGER NOT NULL,
     id_checksum TEXT NOT NULL,
     deleted_ids BLOB NOT NULL,
     file TEXT NOT NULL,
     file_sha256 TEXT NOT NULL,
     saved_at INTEGER NOT NULL
   );
   -- The journal is pruned by age at every open: without this index that scanned every change.
   CREATE INDEX knn_reference_changes_at ON knn_reference_changes (at);`,
];

/**
 * How long the change journal keeps a change: a month of what changed, for a person to read. The
 * listeners are told within a turn of the event loop, and the fleet sync compares the store
 * itself, so nothing in linewatch reads older rows.
 */
const journalKeepMs = 30 * 86_400_000;
/** The journal is pruned when the store opens, and after a change at most this often. */
const journalPruneEveryMs = 3_600_000;
/** Ids per lookUp statement, well under SQLite's limit on bound parameters. */
const lookUpChunk = 250;
/** References whose label and source are remembered at most (about 100 bytes each); past it the memory starts again. */
const rememberedMax = 200_000;

/** What never changes about a reference once added (ids are never reused), so it can be remembered. */
interface Identity {
  label: string;
  source: ReferenceSource;
}

const infoColumns = 'id, label, source, origin, created_at, confidence, model_key, device, decision, labeled_by, confirmed_at';
const filterSql = `(@label IS NULL OR label = @label) AND (@source IS NULL OR source = @source)
  AND (@before IS NULL OR created_at < @before) AND (@after IS NULL OR created_at > @after)
  AND (@unconfirmed IS NULL OR (source = 'auto' AND (confirmed_at IS NULL) = @unconfirmed))
  AND (@automatic IS NULL OR (source = 'auto' OR (source = 'peer' AND labeled_by IS NULL)) = @automatic)`;

interface ReferenceRow {
  id: number;
  label: string;
  source: ReferenceSource;
  origin: string;
  created_at: number;
  confidence: number | null;
  thumbnail: Buffer | null;
  model_key: string | null;
  device: string | null;
  decision: string | null;
  labeled_by: string | null;
  confirmed_at: number | null;
}

interface ChangeRow {
  seq: number;
  reference_id: number;
  change: 'added' | 'removed';
  label: string;
  source: ReferenceSource;
  origin: string;
  at: number;
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
  /** `SELECT id, label, source ... WHERE id IN (?, ...)` by number of ids (a decision asks for k labels). */
  private readonly lookUps = new Map<number, { all(...ids: number[]): unknown[] }>();
  /** Labels and sources already read, by reference id: a decision asks for its k neighbours' every frame. */
  private readonly remembered = new Map<number, Identity>();
  /** One string per label, so the remembered references share them. */
  private readonly labelNames = new Map<string, string>();
  private readonly selectVector;
  private readonly journal;
  private readonly listeners = new Set<ReferenceChangeListener>();
  /** The last change handed to the listeners. */
  private notifiedSeq: number;
  private notifying = false;
  private journalPrunedAt = 0;

  constructor(
    readonly db: Db,
    /** The device new references are recorded as added on (its fleet device id), unless they name one. */
    readonly device: string | null = null,
  ) {
    migrate(db, 'knn', schema);
    this.insertReference = db.prepare(
      `INSERT INTO knn_references (label, source, origin, created_at, confidence, thumbnail, model_key, device, decision, labeled_by, confirmed_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.journal = db.prepare('INSERT INTO knn_reference_changes (reference_id, change, label, source, origin, at) VALUES (?, ?, ?, ?, ?, ?)');
    this.notifiedSeq = this.lastChange();
    this.pruneJournal();
    this.upsertVector = db.prepare(
      'INSERT INTO knn_vectors (model_key, reference_id, vector) VALUES (?, ?, ?) ON CONFLICT (model_key, reference_id) DO UPDATE SET vector = excluded.vector',
    );
    this.vectorLength = db.prepare('SELECT length(vector) FROM knn_vectors WHERE model_key = ? LIMIT 1').pluck();
    this.deleteVectors = db.prepare('DELETE FROM knn_vectors WHERE reference_id = ?');
    this.deleteReference = db.prepare('DELETE FROM knn_references WHERE id = ? RETURNING label, source, origin');
    this.selectReference = db.prepare('SELECT * FROM knn_references WHERE id = ?');
    this.selectVector = db.prepare('SELECT vector FROM knn_vectors WHERE model_key = ? AND reference_id = ?').pluck();
  }

  /** Adds one reference and its vector for `modelKey` in one transaction; returns the reference id. */
  add(reference: NewReference, modelKey: string, vector: Float32Array): number {
    return this.addMany(modelKey, [{ reference, vector }])[0]!;
  }

  /** Adds many references with their vectors in one transaction (all or none); returns their ids in order. */
  addMany(modelKey: string, items: readonly { reference: NewReference; vector: Float32Array }[]): number[] {
    const ids = this.db.transaction(() => {
      this.checkDimension(modelKey, items.map((item) => item.vector));
      const now = Date.now();
      return items.map(({ reference: r, vector }) => {
        checkReference(r);
        const info = this.insertReference.run(
          r.label,
          r.source,
          r.origin,
          r.createdAt ?? now,
          r.confidence ?? null,
          r.thumbnail ?? null,
          modelKey,
          r.device === undefined ? this.device : r.device,
          r.decision ?? null,
          r.labeledBy ?? null,
          r.confirmedAt ?? null,
        );
        const id = Number(info.lastInsertRowid);
        this.upsertVector.run(modelKey, id, vectorBytes(vector));
        this.journal.run(id, 'added', r.label, r.source, r.origin, now);
        return id;
      });
    })();
    this.announce();
    return ids;
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
    const removed = this.db.transaction(() => {
      const now = Date.now();
      let removed = 0;
      for (const id of ids) {
        this.remembered.delete(id);
        this.deleteVectors.run(id);
        const gone = this.deleteReference.get(id) as Pick<ReferenceRow, 'label' | 'source' | 'origin'> | undefined;
        if (!gone) continue;
        this.journal.run(id, 'removed', gone.label, gone.source, gone.origin, now);
        removed++;
      }
      return removed;
    })();
    this.announce();
    return removed;
  }

  /** Marks automatic references as confirmed (they no longer expire); returns how many were not yet. */
  confirm(ids: readonly number[], at = Date.now()): number {
    const update = this.db.prepare("UPDATE knn_references SET confirmed_at = ? WHERE id = ? AND source = 'auto' AND confirmed_at IS NULL");
    return this.db.transaction(() => ids.reduce((n, id) => n + update.run(at, id).changes, 0))();
  }

  /**
   * Tells `listener` of every addition and removal committed from now on, in commit order, a turn
   * of the event loop after the commit (so a change rolled back with an enclosing transaction is
   * never told). Changes made by another process are in changesSince(); returns an unsubscribe.
   */
  onChange(listener: ReferenceChangeListener): () => void {
    // Changes made while nobody listened were never told; a first listener starts from now.
    if (this.listeners.size === 0) this.notifiedSeq = this.lastChange();
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The journal after `seq` (0: from the start), oldest first: a reader that was away catches up from its last seq. */
  changesSince(seq: number, limit = 1000): ReferenceChange[] {
    const rows = this.db.prepare('SELECT * FROM knn_reference_changes WHERE seq > ? ORDER BY seq LIMIT ?').all(seq, limit) as ChangeRow[];
    return rows.map((r) => ({ seq: r.seq, referenceId: r.reference_id, change: r.change, label: r.label, source: r.source, origin: r.origin, at: r.at }));
  }

  /** The seq of the newest change (0 when none). */
  lastChange(): number {
    return (this.db.prepare('SELECT max(seq) FROM knn_reference_changes').pluck().get() as number | null) ?? 0;
  }

  /**
   * Drops journal entries older than a month (relative to `now`), but never one the listeners
   * have not been told yet, nor the newest (lastChange() stays where it was); returns how many.
   */
  pruneJournal(now = Date.now()): number {
    this.journalPrunedAt = now;
    const told = this.listeners.size === 0 ? Number.MAX_SAFE_INTEGER : this.notifiedSeq;
    return this.db
      .prepare('DELETE FROM knn_reference_changes WHERE at < ? AND seq <= ? AND seq < (SELECT max(seq) FROM knn_reference_changes)')
      .run(now - journalKeepMs, told).changes;
  }

  private announce(): void {
    if (Date.now() - this.journalPrunedAt >= journalPruneEveryMs) this.pruneJournal();
    if (this.notifying || this.listeners.size === 0) return;
    this.notifying = true;
    setImmediate(() => {
      this.notifying = false;
      if (!this.db.open) return;
      for (let page = this.changesSince(this.notifiedSeq); page.length > 0; page = this.changesSince(this.notifiedSeq)) {
        this.notifiedSeq = page[page.length - 1]!.seq;
        for (const listener of this.listeners) {
          try {
            listener(page);
          } catch {
            // A listener's failure is its own (it logs it); the others still hear of the change.
          }
        }
      }
    });
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
    removeGraphFiles(graphFolder(this.db), modelKey);
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
    return this.lookUp<string>('label', ids);
  }

  /** Sources of the given references; ids no longer in the store are absent from the map. */
  sourcesOf(ids: readonly number[]): Map<number, ReferenceSource> {
    return this.lookUp<ReferenceSource>('source', ids);
  }

  /**
   * One column of each reference. Labels and sources never change, so each is read once, in one
   * statement per 250 ids: reading 5 labels a decision, even in one statement, cost 30-50 us of
   * the main thread, about a tenth of it at full rate. Ids no longer in the store are left out.
   */
  private lookUp<T>(column: keyof Identity, ids: readonly number[]): Map<number, T> {
    const values = new Map<number, T>();
    const unknown: number[] = [];
    for (const id of ids) {
      const known = this.remembered.get(id);
      if (known) values.set(id, known[column] as T);
      else unknown.push(id);
    }
    if (unknown.length === 0) return values;
    if (this.remembered.size + unknown.length > rememberedMax) this.remembered.clear();
    for (let start = 0; start < unknown.length; start += lookUpChunk) {
      const chunk = unknown.slice(start, start + lookUpChunk);
      let statement = this.lookUps.get(chunk.length);
      if (!statement) {
        statement = this.db.prepare(`SELECT id, label, source FROM knn_references WHERE id IN (${chunk.map(() => '?').join(', ')})`).raw();
        this.lookUps.set(chunk.length, statement);
      }
      for (const [id, label, source] of statement.all(...chunk) as [number, string, ReferenceSource][]) {
        let name = this.labelNames.get(label);
        if (name === undefined) this.labelNames.set(label, (name = label));
        const identity = { label: name, source };
        this.remembered.set(id, identity);
        values.set(id, identity[column] as T);
      }
    }
    return values;
  }

  count(): number {
    return this.db.prepare('SELECT count(*) FROM knn_references').pluck().get() as number;
  }

  /** Origins already enrolled (image paths, peer ids), so enrolling a folder twice adds nothing twice. */
  origins(): Set<string> {
    return new Set(this.db.prepare('SELECT DISTINCT origin FROM knn_references').pluck().all() as string[]);
  }

  /** Newest first, for browsing (the web UI, `linewatch references list`); thumbnails are fetched one by one with get(). */
  list(options: ReferenceListOptions = {}): ReferenceInfo[] {
    const rows = this.db
      .prepare(`SELECT ${infoColumns} FROM knn_references WHERE ${filterSql} ORDER BY id DESC LIMIT @limit OFFSET @offset`)
      .all({ ...filterParams(options), limit: options.limit ?? 100, offset: options.offset ?? 0 }) as Omit<ReferenceRow, 'thumbnail'>[];
    return rows.map((row) => toInfo(row));
  }

  /** Ids of every reference that matches, oldest first. */
  idsWhere(filter: ReferenceFilter): number[] {
    return this.db.prepare(`SELECT id FROM knn_references WHERE ${filterSql} ORDER BY id`).pluck().all(filterParams(filter)) as number[];
  }

  /** How many references match. */
  countWhere(filter: ReferenceFilter): number {
    return this.db.prepare(`SELECT count(*) FROM knn_references WHERE ${filterSql}`).pluck().get(filterParams(filter)) as number;
  }

  /** Counts per source, then per label: `{ human: { good: 40 }, auto: { good: 12 } }`. */
  countBySourceAndLabel(): Record<string, Record<string, number>> {
    const rows = this.db.prepare('SELECT source, label, count(*) AS n FROM knn_references GROUP BY source, label ORDER BY source, label').all() as {
      source: string;
      label: string;
      n: number;
    }[];
    const counts: Record<string, Record<string, number>> = {};
    for (const r of rows) (counts[r.source] ??= {})[r.label] = r.n;
    return counts;
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

/** Admitted by self-training, here or on a peer (a peer reference no person labeled); `filterSql`'s `automatic` says the same. */
export function isAutomatic(reference: Pick<Reference, 'source' | 'labeledBy'>): boolean {
  return reference.source === 'auto' || (reference.source === 'peer' && reference.labeledBy === null);
}

function checkReference(reference: NewReference): void {
  if (!reference.label) throw new UserError('a reference needs a label', 'name the folder or pass --label');
  if (!sources.includes(reference.source)) throw new TypeError(`unknown reference source ${String(reference.source)}`);
}

function vectorBytes(vector: Float32Array): Buffer {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
}

function filterParams(f: ReferenceFilter): Record<string, unknown> {
  return {
    label: f.label ?? null,
    source: f.source ?? null,
    before: f.createdBefore ?? null,
    after: f.createdAfter ?? null,
    unconfirmed: f.unconfirmed === undefined ? null : f.unconfirmed ? 1 : 0,
    automatic: f.automatic === undefined ? null : f.automatic ? 1 : 0,
  };
}

function toInfo(row: Omit<ReferenceRow, 'thumbnail'>): ReferenceInfo {
  return {
    id: row.id,
    label: row.label,
    source: row.source,
    origin: row.origin,
    createdAt: row.created_at,
    confidence: row.confidence,
    modelKey: row.model_key,
    device: row.device,
    decision: row.decision,
    labeledBy: row.labeled_by,
    confirmedAt: row.confirmed_at,
  };
}

function toReference(row: ReferenceRow): Reference {
  return { ...toInfo(row), thumbnail: row.thumbnail };
}
