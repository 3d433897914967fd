import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readdirSync, readSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { makeStateDir, STATE_FILE_MODE, tightenMode } from '../common/index.js';
import type { Db } from '../storage/index.js';

/**
 * The saved HNSW graphs of a database live in files beside it (`<database>-hnsw/`), one per model
 * key, named by their content hash; the database's knn_saved_index row names the current one.
 * hnswlib reads only files: a graph kept as a blob in SQLite had to be copied out through a
 * temporary file at every start (two extra copies of 66 MB at 100k references). A file, once named,
 * never changes, so a reader never sees one half written by another process.
 */
export function graphFolder(db: Db): string | undefined {
  // An in-memory database ends with the process, and so would anything saved for it.
  return db.memory ? undefined : `${db.name}-hnsw`;
}

/** `<model key>.<16 hex of the content's sha256>.hnsw`, the key escaped so that it is one file name. */
function fileName(modelKey: string, sha256: string): string {
  return `${encodeURIComponent(modelKey)}.${sha256.slice(0, 16)}.hnsw`;
}

/**
 * Writes a graph into `folder` durably (temporary file, fsync, rename, fsync of the folder) and
 * returns its file name and sha256.
 */
export function writeGraphFile(folder: string, modelKey: string, write: (path: string) => void): { file: string; sha256: string } {
  makeStateDir(folder, 'stateDir');
  const temp = join(folder, `.${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  try {
    write(temp);
    tightenMode(temp, STATE_FILE_MODE);
    const fd = openSync(temp, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const sha256 = hashFile(temp);
    const file = fileName(modelKey, sha256);
    renameSync(temp, join(folder, file));
    const dir = openSync(folder, 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    return { file, sha256 };
  } finally {
    rmSync(temp, { force: true });
  }
}

/** Removes the saved graph files of `modelKey` other than `keep` (all of them without it). */
export function removeGraphFiles(folder: string | undefined, modelKey: string, keep?: string): void {
  if (!folder) return;
  const pattern = new RegExp(`^${escapeRegExp(encodeURIComponent(modelKey))}\\.[0-9a-f]{16}\\.hnsw$`);
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch {
    return; // no folder: nothing was saved
  }
  for (const name of names) if (name !== keep && pattern.test(name)) rmSync(join(folder, name), { force: true });
}

/** sha256 of a file, read through one small buffer (a 66 MB graph is not copied into memory). */
export function hashFile(path: string): string {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(1 << 20);
  const fd = openSync(path, 'r');
  try {
    for (let n; (n = readSync(fd, buffer, 0, buffer.length, null)) > 0; ) hash.update(buffer.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
