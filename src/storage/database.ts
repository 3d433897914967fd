import { closeSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { makeStateDir, STATE_FILE_MODE, tightenMode, UserError } from '../common/index.js';

export type Db = Database.Database;

/**
 * Opens (creating if needed) the daemon's one SQLite file.
 * WAL lets status readers run beside the writer; synchronous=FULL makes a committed event
 * survive power loss, which matters more here than write throughput (only anomalies are written).
 */
export function openDatabase(path: string, options: { readonly?: boolean } = {}): Db {
  if (path !== ':memory:' && !options.readonly) prepareFile(path);
  let db: Db;
  try {
    db = new Database(path, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
  } catch (err) {
    throw new UserError(
      `cannot open the database ${path}: ${(err as Error).message}`,
      options.readonly
        ? 'start the daemon once (linewatch run) so it creates its database, or check --config / stateDir'
        : 'check that stateDir exists, is writable by this user, and the disk is not full',
      { cause: err },
    );
  }
  if (!options.readonly) {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    // A WAL that grew while checkpoints were held up (a long reader) shrinks back after the next
    // one, returning room to the disk; the usual WAL (1000 pages) stays below this and is reused.
    db.pragma('journal_size_limit = 16777216');
  }
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  return db;
}

/**
 * Runs `fn` with its commits not fsync'd (synchronous=NORMAL), then restores the connection's
 * level. In WAL mode such a commit is written to the WAL but only made durable by the next
 * fsync'd commit (or checkpoint): a power cut may undo it, never corrupt the database. Only for
 * writes that may be undone: the deletes of delivered events (an undone one is sent again).
 */
export function withoutFsync<T>(db: Db, fn: () => T): T {
  const level = db.pragma('synchronous', { simple: true }) as number;
  db.pragma('synchronous = NORMAL');
  try {
    return fn();
  } finally {
    db.pragma(`synchronous = ${level}`);
  }
}

/**
 * The folder, and the file itself made 0640 before SQLite sees it: SQLite gives the -wal and -shm
 * files the mode of the database file, so all three stay private whatever the umask.
 */
function prepareFile(path: string): void {
  makeStateDir(dirname(path), 'stateDir');
  try {
    closeSync(openSync(path, 'a', STATE_FILE_MODE));
  } catch {
    return; // SQLite's own open says what is wrong, in the database's words
  }
  for (const suffix of ['', '-wal', '-shm']) tightenMode(path + suffix, STATE_FILE_MODE);
}

/**
 * Applies a component's schema steps that have not run yet. Step i (0-based) brings the
 * component's schema to version i+1; steps are append-only, never edited once released.
 */
export function migrate(db: Db, component: string, steps: readonly string[]): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)');
  const row = db.prepare('SELECT version FROM schema_version WHERE component = ?').get(component) as
    | { version: number }
    | undefined;
  const current = row?.version ?? 0;
  if (current > steps.length) {
    throw new UserError(
      `the database was written by a newer linewatch (${component} schema ${current}, this build knows ${steps.length})`,
      'upgrade linewatch, or point stateDir at a fresh folder',
    );
  }
  const apply = db.transaction(() => {
    for (let v = current; v < steps.length; v++) db.exec(steps[v]!);
    db.prepare('INSERT INTO schema_version (component, version) VALUES (?, ?) ON CONFLICT(component) DO UPDATE SET version = excluded.version').run(
      component,
      steps.length,
    );
  });
  apply();
}

/** True when SQLite failed because the disk (or the database's size limit) is full. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_FULL' || code === 'SQLITE_IOERR_WRITE' || (err as NodeJS.ErrnoException | null)?.code === 'ENOSPC';
}
