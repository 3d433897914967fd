import { migrate, type Db } from '../storage/index.js';
import type { Provenance } from './message.js';

// Step i brings the sync schema to version i+1; never edit a released step, append a new one.
const schema = [
  `CREATE TABLE sync_published (
     reference_id INTEGER PRIMARY KEY, -- this device's reference (knn_references ids are never reused)
     fleet_id TEXT NOT NULL,
     topic TEXT NOT NULL,              -- where it is retained; its tombstone replaces it there
     deleted INTEGER NOT NULL DEFAULT 0,
     pending INTEGER NOT NULL DEFAULT 1 -- 1 until the broker acknowledged the current state
   );
   CREATE INDEX sync_published_pending ON sync_published (pending) WHERE pending = 1;
   CREATE TABLE sync_imported (
     fleet_id TEXT PRIMARY KEY,        -- <device>/<its reference id>
     site TEXT NOT NULL,
     device TEXT NOT NULL,
     reference_id INTEGER,             -- the local peer reference; null for a tombstone of one never imported
     deleted INTEGER NOT NULL DEFAULT 0,
     model_key TEXT,                   -- the key of the vector it came with
     provenance TEXT,                  -- JSON, as its device told it
     received_at INTEGER NOT NULL
   ) WITHOUT ROWID;`,
];

export interface PublishRow {
  referenceId: number;
  fleetId: string;
  topic: string;
  deleted: boolean;
}

/** What is known of a fleet id received before. */
export interface ImportedState {
  referenceId: number | null;
  deleted: boolean;
}

/**
 * The sync's own tables, beside the reference store: which of this device's references are
 * shared (and whether the broker has their current state), and which peer references were
 * imported or deleted, by fleet id, so an import is idempotent and a deletion is final.
 */
export class SyncLedger {
  private readonly selectImported;
  private readonly insertImported;
  private readonly markImportedDeleted;
  private readonly settle;
  private readonly selectPending;

  constructor(private readonly db: Db) {
    migrate(db, 'sync', schema);
    this.selectImported = db.prepare('SELECT reference_id AS referenceId, deleted FROM sync_imported WHERE fleet_id = ?');
    this.insertImported = db.prepare(
      'INSERT INTO sync_imported (fleet_id, site, device, reference_id, deleted, model_key, provenance, received_at) VALUES (@fleetId, @site, @device, @referenceId, @deleted, @modelKey, @provenance, @receivedAt)',
    );
    this.markImportedDeleted = db.prepare('UPDATE sync_imported SET deleted = 1, received_at = ? WHERE fleet_id = ?');
    this.selectPending = db.prepare(
      'SELECT reference_id AS referenceId, fleet_id AS fleetId, topic, deleted FROM sync_published WHERE pending = 1 AND reference_id > ? ORDER BY reference_id LIMIT ?',
    );
    this.settle = db.prepare('UPDATE sync_published SET pending = 0 WHERE reference_id = ? AND deleted = ?');
  }

  /**
   * Brings the shared set in line with the store: this device's references of the shared sources
   * that are not yet shared are added (to publish on `topicOf`), shared ones that are gone become
   * tombstones. Diffing the store rather than following each change also catches what was changed
   * while the daemon was stopped (the CLI on its database). Returns how many rows changed.
   */
  reconcile(sources: readonly string[], topicOf: (referenceId: number) => { fleetId: string; topic: string }): number {
    return this.db.transaction(() => {
      const fresh = this.db
        .prepare(
          `SELECT r.id FROM knn_references r
           WHERE r.source IN (SELECT value FROM json_each(?)) AND NOT EXISTS (SELECT 1 FROM sync_published p WHERE p.reference_id = r.id)
           ORDER BY r.id`,
        )
        .pluck()
        .all(JSON.stringify(sources)) as number[];
      const insert = this.db.prepare('INSERT INTO sync_published (reference_id, fleet_id, topic) VALUES (?, ?, ?)');
      for (const id of fresh) {
        const { fleetId, topic } = topicOf(id);
        insert.run(id, fleetId, topic);
      }
      const gone = this.db
        .prepare('UPDATE sync_published SET deleted = 1, pending = 1 WHERE deleted = 0 AND NOT EXISTS (SELECT 1 FROM knn_references r WHERE r.id = reference_id)')
        .run().changes;
      return fresh.length + gone;
    })();
  }

  /** Marks every live shared reference to publish again: a broker that lost its retained messages gets them back at the device's start. */
  republishLive(): void {
    this.db.prepare('UPDATE sync_published SET pending = 1 WHERE deleted = 0').run();
  }

  /** Rows whose current state the broker has not acknowledged, in reference order after `afterId` (pages). */
  pending(limit: number, afterId = 0): PublishRow[] {
    const rows = this.selectPending.all(afterId, limit) as (Omit<PublishRow, 'deleted'> & { deleted: number })[];
    return rows.map((r) => ({ ...r, deleted: r.deleted === 1 }));
  }

  /** A row not yet published goes out under another topic (the model changed before its first publish). */
  moveTopic(referenceId: number, topic: string): void {
    this.db.prepare('UPDATE sync_published SET topic = ? WHERE reference_id = ? AND deleted = 0').run(topic, referenceId);
  }

  /** The broker acknowledged `row`'s state; a row deleted meanwhile stays pending for its tombstone. */
  published(row: PublishRow): void {
    this.settle.run(row.referenceId, row.deleted ? 1 : 0);
  }

  imported(fleetId: string): ImportedState | undefined {
    const row = this.selectImported.get(fleetId) as { referenceId: number | null; deleted: number } | undefined;
    return row && { referenceId: row.referenceId, deleted: row.deleted === 1 };
  }

  recordImport(entry: { fleetId: string; site: string; device: string; referenceId: number; modelKey: string; provenance: Provenance }): void {
    this.insertImported.run({ ...entry, deleted: 0, provenance: JSON.stringify(entry.provenance), receivedAt: Date.now() });
  }

  /** Records a deletion: of an imported reference, or ahead of one (a later, older copy must not bring it back). */
  recordDeletion(entry: { fleetId: string; site: string; device: string }): void {
    if (this.markImportedDeleted.run(Date.now(), entry.fleetId).changes === 0) {
      this.insertImported.run({ ...entry, referenceId: null, deleted: 1, modelKey: null, provenance: null, receivedAt: Date.now() });
    }
  }

  /** Imported references still in the store (a technician may have removed some). */
  peerReferences(): number {
    return this.db
      .prepare('SELECT count(*) FROM sync_imported i JOIN knn_references r ON r.id = i.reference_id WHERE i.deleted = 0')
      .pluck()
      .get() as number;
  }

  counts(): { shared: number; tombstones: number; pending: number } {
    return this.db
      .prepare('SELECT count(*) FILTER (WHERE deleted = 0) AS shared, count(*) FILTER (WHERE deleted = 1) AS tombstones, count(*) FILTER (WHERE pending = 1) AS pending FROM sync_published')
      .get() as { shared: number; tombstones: number; pending: number };
  }
}

/**
 * The fleet ids a database holds, live and deleted, its own and its peers': two devices that
 * converged hold the same sets. Reads only, so it works on the database of a running daemon.
 */
export function fleetIds(db: Db): { live: string[]; deleted: string[] } {
  const rows = db
    .prepare(
      `SELECT fleet_id AS id, deleted FROM sync_published
       UNION ALL SELECT fleet_id, deleted FROM sync_imported WHERE deleted = 1 OR reference_id IN (SELECT id FROM knn_references)
       ORDER BY id`,
    )
    .all() as { id: string; deleted: number }[];
  return { live: rows.filter((r) => r.deleted === 0).map((r) => r.id), deleted: rows.filter((r) => r.deleted === 1).map((r) => r.id) };
}
