import { migrate, type Db } from '../storage/index.js';
import type { ClassifierSettings } from './options.js';

/** The classifier settings a person may change at run time (goodLabel names the data, so it stays in the file). */
export type ClassifierOverrides = Partial<Pick<ClassifierSettings, 'k' | 'threshold' | 'unknownDistance'>>;

const names = ['k', 'threshold', 'unknownDistance'] as const;

const steps = [
  `CREATE TABLE classifier_overrides (
     name TEXT PRIMARY KEY,
     value REAL NOT NULL,
     set_at INTEGER NOT NULL,
     set_by TEXT NOT NULL
   )`,
];

/**
 * Classifier settings set through the control API, kept in the state database so they survive a
 * restart. They win over the config file and the bundle's calibration; status says so.
 */
export class OverrideStore {
  constructor(private readonly db: Db) {
    migrate(db, 'classifier', steps);
  }

  get(): ClassifierOverrides {
    const rows = this.db.prepare('SELECT name, value FROM classifier_overrides').all() as { name: (typeof names)[number]; value: number }[];
    return Object.fromEntries(rows.filter((r) => names.includes(r.name)).map((r) => [r.name, r.value])) as ClassifierOverrides;
  }

  /** Sets the given values; a null clears that override, so the file's value counts again. */
  set(changes: { [K in keyof ClassifierOverrides]?: number | null }, by: string): ClassifierOverrides {
    this.db.transaction(() => {
      for (const name of names) {
        const value = changes[name];
        if (value === undefined) continue;
        if (value === null) this.db.prepare('DELETE FROM classifier_overrides WHERE name = ?').run(name);
        else
          this.db
            .prepare('INSERT INTO classifier_overrides (name, value, set_at, set_by) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value, set_at = excluded.set_at, set_by = excluded.set_by')
            .run(name, value, Date.now(), by);
      }
    })();
    return this.get();
  }
}
