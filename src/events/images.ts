import { isDiskFull, migrate, type Db } from '../storage/index.js';

/** What list() shows of a stored anomaly image: everything but the image and the vector. */
export interface AnomalyImageInfo {
  eventId: string;
  /** ms since epoch. */
  createdAt: number;
  contentType: string;
  /** What the row's image and vector take, which is what `maxBytes` bounds. */
  bytes: number;
  /** `<name>@<version>` of the model that produced the vector. */
  modelKey: string;
  /** The decision's label. */
  label: string;
  score: number;
}

export interface AnomalyImage extends AnomalyImageInfo {
  image: Buffer;
  vector: Float32Array;
}

export interface AnomalyImageRetention {
  maxCount: number;
  maxBytes: number;
  maxAgeDays: number;
}

export interface AnomalyImageListOptions {
  /** Default 100. */
  limit?: number;
  /** Only images created before this time (ms): the next page after the last row seen. */
  before?: number;
  label?: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** Rows deleted per transaction: a big prune gives other writers (the outbox) a turn in between. */
const PRUNE_BATCH = 500;

const steps = [
  // Blobs last: SQLite reads columns in order, so scans for prune and list() stop before the
  // image's overflow pages.
  `CREATE TABLE anomaly_images (
     event_id TEXT PRIMARY KEY,
     created_at INTEGER NOT NULL,
     content_type TEXT NOT NULL,
     bytes INTEGER NOT NULL,
     model_key TEXT NOT NULL,
     label TEXT NOT NULL,
     score REAL NOT NULL,
     image BLOB NOT NULL,
     vector BLOB NOT NULL
   );
   CREATE INDEX anomaly_images_created_at ON anomaly_images (created_at)`,
];

const INFO_COLUMNS =
  'event_id AS eventId, created_at AS createdAt, content_type AS contentType, bytes, model_key AS modelKey, label, score';

/**
 * The image (ROI crop) and embedding of each anomaly, so a technician can see and label it and the
 * labelled item can become a reference. Retention removes images only; events are untouched.
 */
export class AnomalyImages {
  private readonly insert;
  private readonly select;
  private readonly selectList;
  private readonly selectOldest;
  private readonly selectBytes;
  private readonly selectMinCreated;
  private readonly remove;
  /** Totals of committed rows, read once, so prune() and stats() can run after every anomaly without COUNT/SUM. */
  private count: number;
  private bytes: number;
  /**
   * Added inside a caller's transaction that may still roll back: counted once it is known to
   * have committed (see settle()).
   */
  private readonly pending = new Set<string>();

  constructor(
    private readonly db: Db,
    private readonly retention: AnomalyImageRetention,
  ) {
    migrate(db, 'images', steps);
    this.insert = db.prepare(
      `INSERT INTO anomaly_images (event_id, created_at, content_type, bytes, model_key, label, score, image, vector)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.select = db.prepare(`SELECT ${INFO_COLUMNS}, image, vector FROM anomaly_images WHERE event_id = ?`);
    this.selectList = db.prepare(
      `SELECT ${INFO_COLUMNS} FROM anomaly_images WHERE created_at < @before AND (@label IS NULL OR label = @label)
       ORDER BY created_at DESC, event_id DESC LIMIT @limit`,
    );
    this.selectOldest = db.prepare(
      'SELECT event_id AS eventId, created_at AS createdAt, bytes FROM anomaly_images ORDER BY created_at, event_id LIMIT ?',
    );
    this.selectBytes = db.prepare('SELECT bytes FROM anomaly_images WHERE event_id = ?').pluck();
    this.selectMinCreated = db.prepare('SELECT MIN(created_at) FROM anomaly_images').pluck();
    this.remove = db.prepare('DELETE FROM anomaly_images WHERE event_id = ?');
    const totals = db.prepare('SELECT COUNT(*) AS count, COALESCE(SUM(bytes), 0) AS bytes FROM anomaly_images').get() as {
      count: number;
      bytes: number;
    };
    this.count = totals.count;
    this.bytes = totals.bytes;
  }

  /** Stores an anomaly's image. Works inside the caller's `db.transaction(...)`. */
  add(item: {
    eventId: string;
    createdAt: number;
    contentType: string;
    image: Buffer;
    modelKey: string;
    vector: Float32Array;
    label: string;
    score: number;
  }): void {
    const vector = Buffer.from(item.vector.buffer, item.vector.byteOffset, item.vector.byteLength);
    const bytes = item.image.byteLength + vector.byteLength;
    this.insert.run(item.eventId, item.createdAt, item.contentType, bytes, item.modelKey, item.label, item.score, item.image, vector);
    if (this.db.inTransaction) {
      this.pending.add(item.eventId);
    } else {
      this.count += 1;
      this.bytes += bytes;
    }
  }

  get(eventId: string): AnomalyImage | undefined {
    const row = this.select.get(eventId) as (AnomalyImageInfo & { image: Buffer; vector: Buffer }) | undefined;
    if (!row) return undefined;
    // A fresh Float32Array: SQLite's buffer need not be 4-byte aligned, so it cannot be viewed in place.
    const vector = new Float32Array(row.vector.byteLength / Float32Array.BYTES_PER_ELEMENT);
    new Uint8Array(vector.buffer).set(row.vector);
    return { ...row, vector };
  }

  /** Newest first. */
  list(options: AnomalyImageListOptions = {}): AnomalyImageInfo[] {
    return this.selectList.all({
      before: options.before ?? Number.MAX_SAFE_INTEGER,
      label: options.label ?? null,
      limit: options.limit ?? 100,
    }) as AnomalyImageInfo[];
  }

  /**
   * Removes the oldest images until at most maxCount and maxBytes remain, and every image older
   * than maxAgeDays. Runs its own short transactions, so call it outside any. On a full disk it
   * stops and returns what was removed so far.
   */
  prune(now: number = Date.now()): { removed: number; bytes: number } {
    if (this.db.inTransaction) {
      throw new Error('AnomalyImages.prune() commits in batches: call it outside db.transaction()');
    }
    this.settle();
    const cutoff = now - this.retention.maxAgeDays * DAY_MS;
    const removed = { removed: 0, bytes: 0 };
    const deleteBatch = this.db.transaction(() => {
      const batch = { removed: 0, bytes: 0 };
      for (const row of this.selectOldest.all(PRUNE_BATCH) as { eventId: string; createdAt: number; bytes: number }[]) {
        const over =
          this.count - batch.removed > this.retention.maxCount ||
          this.bytes - batch.bytes > this.retention.maxBytes ||
          row.createdAt < cutoff;
        if (!over) break;
        this.remove.run(row.eventId);
        batch.removed += 1;
        batch.bytes += row.bytes;
      }
      return batch;
    });
    try {
      for (;;) {
        const batch = deleteBatch();
        this.count -= batch.removed;
        this.bytes -= batch.bytes;
        removed.removed += batch.removed;
        removed.bytes += batch.bytes;
        if (batch.removed < PRUNE_BATCH) return removed;
      }
    } catch (err) {
      // The failed batch rolled back as a whole; earlier batches are committed and counted.
      if (isDiskFull(err)) return removed;
      throw err;
    }
  }

  /** Committed images (inside a transaction, without the ones it added). */
  stats(): { count: number; bytes: number; oldest: number | null } {
    this.settle();
    return { count: this.count, bytes: this.bytes, oldest: this.selectMinCreated.get() as number | null };
  }

  /** Counts rows added inside transactions that have since committed; forgets those rolled back. */
  private settle(): void {
    if (this.db.inTransaction) return;
    for (const eventId of this.pending) {
      const bytes = this.selectBytes.get(eventId) as number | undefined;
      if (bytes !== undefined) {
        this.count += 1;
        this.bytes += bytes;
      }
    }
    this.pending.clear();
  }
}
