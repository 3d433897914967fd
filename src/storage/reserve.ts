import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { createLogger, errorText, type Logger } from '../common/index.js';
import type { Db } from './database.js';

/**
 * Room held back on the state directory's disk. A checkpoint copies the WAL (up to 1000 pages,
 * 4 MB by default) into the database file, which may grow by as much; deletes need WAL room again;
 * twice that is the margin.
 */
const DISK_RESERVE_BYTES = 16 * 1024 * 1024;

/**
 * Keeps a full disk from wedging the database. In WAL mode a DELETE needs disk room too (its pages
 * go to the WAL, and the checkpoint that recycles the WAL may grow the database file), so on a
 * full disk the delivered events could not be removed and the backlog never shrank.
 *
 * A reserve file in the state directory holds room back. When a write meets a full disk the
 * database stops growing (`max_page_count` at its current size: new rows reuse only the room of
 * deleted ones); when a delete meets it the reserve is deleted so the deletes and the checkpoint
 * go through. Once the disk has room again the reserve is made again and the database may grow.
 */
export class DiskReserve {
  private readonly log: Logger;
  private readonly bytes: number;
  /** SQLite's own limit, restored when the disk has room again. */
  private readonly unlimited: number;
  /** The database is held at its size because the disk was full. */
  private capped = false;
  private lastLook = 0;

  constructor(
    private readonly db: Db,
    /** The reserve file, on the database's disk. */
    readonly path: string,
    options: { bytes?: number; logger?: Logger } = {},
  ) {
    this.bytes = options.bytes ?? DISK_RESERVE_BYTES;
    this.log = options.logger ?? createLogger('storage');
    this.unlimited = db.pragma('max_page_count', { simple: true }) as number;
  }

  /**
   * Makes the reserve file if it is missing and the disk has room for it and as much again;
   * returns whether it exists.
   */
  keep(): boolean {
    if (existsSync(this.path)) return true;
    if (freeBytes(this.path) < 2 * this.bytes) return false;
    try {
      writeReserve(this.path, this.bytes);
    } catch (err) {
      rmSync(this.path, { force: true });
      this.log.warn('could not make the disk reserve', { path: this.path, error: errorText(err) });
      return false;
    }
    return true;
  }

  /** A write met a full disk (or the cap): from now on the database reuses its own free room only. */
  full(): void {
    if (this.capped) return;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    this.db.pragma(`max_page_count = ${pages}`);
    this.capped = true;
    this.log.warn('the disk is full: the database stops growing; new events reuse the room of delivered ones', { path: this.path, pages });
  }

  /** A delete met a full disk: hands the reserve's room to the database; false when there was none left. */
  release(): boolean {
    if (!existsSync(this.path)) return false;
    rmSync(this.path, { force: true });
    this.log.warn('the disk is full: released the disk reserve so that delivered events can be deleted', { path: this.path, bytes: this.bytes });
    return true;
  }

  /**
   * While the database is held at its size: once the disk has room for the reserve and as much
   * again, makes the reserve again and lets the database grow. Looks at most once a second;
   * returns true when it lifted the cap.
   */
  recover(): boolean {
    const now = Date.now();
    if (!this.capped || now - this.lastLook < 1000) return false;
    this.lastLook = now;
    if (!this.keep() || freeBytes(this.path) < this.bytes) return false;
    this.db.pragma(`max_page_count = ${this.unlimited}`);
    this.capped = false;
    this.log.info('the disk has room again: the database may grow, the disk reserve is back', { path: this.path });
    return true;
  }
}

function freeBytes(path: string): number {
  const s = statfsSync(dirname(path));
  return s.bavail * s.bsize;
}

/** Random bytes, not zeros: a compressing filesystem (btrfs, zfs) would store zeros in no room at all. */
function writeReserve(path: string, bytes: number): void {
  const chunk = randomBytes(1024 * 1024);
  const fd = openSync(path, 'wx', 0o600);
  try {
    for (let written = 0; written < bytes; written += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - written));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
