import { migrate, type Db } from '../storage/index.js';

/** Where a version came from: the config file's `model:`, or a push by a technician. */
export type ModelOrigin = 'config' | 'push';

export interface ModelVersion {
  key: string;
  name: string;
  version: string;
  precision: string;
  /** The bundle folder. */
  dir: string;
  sha256: string;
  /** Key id of the signature that was verified, or null (the config's model, or unsigned in development). */
  signedBy: string | null;
  origin: ModelOrigin;
  addedAt: number;
  /** The accuracy gate's figures when it was pushed (null for the config's model). */
  gate: unknown;
}

export type ModelAction = 'start' | 'push' | 'refused' | 'activate' | 'rollback' | 'auto-rollback' | 'removed';

export interface ModelHistoryEntry {
  at: number;
  action: ModelAction;
  key: string;
  fromKey: string | null;
  forced: boolean;
  /** Who or what asked: `mqtt`, `http`, `cli`, `inbox`, `daemon`. */
  via: string;
  detail: unknown;
}

const steps = [
  `CREATE TABLE model_versions (
     key TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     version TEXT NOT NULL,
     precision TEXT NOT NULL,
     dir TEXT NOT NULL,
     sha256 TEXT NOT NULL,
     signed_by TEXT,
     origin TEXT NOT NULL,
     added_at INTEGER NOT NULL,
     gate TEXT
   );
   -- One row: the model in force, the one a rollback brings back, and the config's model key at the last start.
   CREATE TABLE model_state (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     active TEXT,
     previous TEXT,
     config_key TEXT
   );
   INSERT INTO model_state (id) VALUES (1);
   CREATE TABLE model_history (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     at INTEGER NOT NULL,
     action TEXT NOT NULL,
     key TEXT NOT NULL,
     from_key TEXT,
     forced INTEGER NOT NULL,
     via TEXT NOT NULL,
     detail TEXT
   );`,
];

interface VersionRow {
  key: string;
  name: string;
  version: string;
  precision: string;
  dir: string;
  sha256: string;
  signed_by: string | null;
  origin: ModelOrigin;
  added_at: number;
  gate: string | null;
}

/**
 * The model versions on this device, which one is active, which one a rollback brings back, and
 * what happened to them. A swap is one transaction here: after a crash the daemon starts on the
 * model this table names, whole.
 */
export class ModelRegistry {
  constructor(private readonly db: Db) {
    migrate(db, 'models', steps);
  }

  get(key: string): ModelVersion | undefined {
    const row = this.db.prepare('SELECT * FROM model_versions WHERE key = ?').get(key) as VersionRow | undefined;
    return row && toVersion(row);
  }

  list(): ModelVersion[] {
    return (this.db.prepare('SELECT * FROM model_versions ORDER BY added_at, key').all() as VersionRow[]).map(toVersion);
  }

  state(): { active: string | null; previous: string | null; configKey: string | null } {
    const row = this.db.prepare('SELECT active, previous, config_key FROM model_state WHERE id = 1').get() as {
      active: string | null;
      previous: string | null;
      config_key: string | null;
    };
    return { active: row.active, previous: row.previous, configKey: row.config_key };
  }

  /** Records a version (or updates it: a config model re-read at start). */
  put(version: ModelVersion): void {
    this.db
      .prepare(
        `INSERT INTO model_versions (key, name, version, precision, dir, sha256, signed_by, origin, added_at, gate)
         VALUES (@key, @name, @version, @precision, @dir, @sha256, @signedBy, @origin, @addedAt, @gate)
         ON CONFLICT (key) DO UPDATE SET dir = excluded.dir, sha256 = excluded.sha256, signed_by = excluded.signed_by,
           origin = excluded.origin, gate = excluded.gate, precision = excluded.precision`,
      )
      .run({ ...version, gate: version.gate === null || version.gate === undefined ? null : JSON.stringify(version.gate) });
  }

  remove(key: string): void {
    this.db.prepare('DELETE FROM model_versions WHERE key = ?').run(key);
  }

  /** Makes `key` active and the one in force before it the previous one, with a history line: one transaction. */
  activate(key: string, entry: Omit<ModelHistoryEntry, 'at' | 'key' | 'fromKey'>, options: { configKey?: string } = {}): void {
    this.db.transaction(() => {
      const { active } = this.state();
      const previous = active !== null && active !== key ? active : this.state().previous;
      this.db.prepare('UPDATE model_state SET active = ?, previous = ? WHERE id = 1').run(key, previous);
      if (options.configKey !== undefined) this.db.prepare('UPDATE model_state SET config_key = ? WHERE id = 1').run(options.configKey);
      this.record({ ...entry, key, fromKey: active });
    })();
  }

  record(entry: Omit<ModelHistoryEntry, 'at'> & { at?: number }): void {
    this.db
      .prepare('INSERT INTO model_history (at, action, key, from_key, forced, via, detail) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(entry.at ?? Date.now(), entry.action, entry.key, entry.fromKey, entry.forced ? 1 : 0, entry.via, entry.detail === undefined ? null : JSON.stringify(entry.detail));
  }

  history(limit = 50): ModelHistoryEntry[] {
    const rows = this.db.prepare('SELECT * FROM model_history ORDER BY id DESC LIMIT ?').all(limit) as {
      at: number;
      action: ModelAction;
      key: string;
      from_key: string | null;
      forced: number;
      via: string;
      detail: string | null;
    }[];
    return rows.map((r) => ({ at: r.at, action: r.action, key: r.key, fromKey: r.from_key, forced: r.forced === 1, via: r.via, detail: r.detail === null ? null : JSON.parse(r.detail) }));
  }
}

function toVersion(row: VersionRow): ModelVersion {
  return {
    key: row.key,
    name: row.name,
    version: row.version,
    precision: row.precision,
    dir: row.dir,
    sha256: row.sha256,
    signedBy: row.signed_by,
    origin: row.origin,
    addedAt: row.added_at,
    gate: row.gate === null ? null : JSON.parse(row.gate),
  };
}
