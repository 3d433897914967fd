import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAnomalyEvent, Outbox, OutboxFullError } from '../../dist/events/index.js';
import { DiskReserve, openDatabase, type Db } from '../../dist/storage/index.js';
import { decision } from '../events/fixtures.js';
import { until } from '../ops/helpers.js';
import { canMountTmpfs, MiB, mountTmpfs, type SmallDisk } from '../helpers/tmpfs.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

let next = 0;
/** Appends events in batches of 50 until the outbox refuses them for a full disk; returns how many were stored. */
function fill(outbox: Outbox): number {
  let stored = 0;
  for (;;) {
    try {
      outbox.transaction(() => {
        for (let i = 0; i < 50; i++) outbox.append(createAnomalyEvent(decision(next++)));
      });
      stored += 50;
    } catch (err) {
      expect(err).toBeInstanceOf(OutboxFullError);
      return stored;
    }
  }
}

/** Acknowledges every row, 16 at a time as PUBACKs come; throws if a delete fails. */
function drain(outbox: Outbox): void {
  for (let rows = outbox.peek(16); rows.length > 0; rows = outbox.peek(16)) outbox.ack(rows.map((r) => r.seq));
}

function open(disk: SmallDisk): { db: Db; outbox: Outbox; reserve: DiskReserve } {
  const db = openDatabase(join(disk.path, 'linewatch.db'));
  cleanups.push(() => db.close());
  const reserve = new DiskReserve(db, join(disk.path, 'disk-reserve'), { bytes: 4 * MiB });
  return { db, outbox: new Outbox(db, reserve), reserve };
}

describe.skipIf(!canMountTmpfs)('disk full, on a real 32 MiB tmpfs (needs root)', () => {
  it('deletes delivered events on a full disk, stores new ones in their room again and again', () => {
    const disk = mountTmpfs(32 * MiB);
    cleanups.push(() => disk.unmount());
    // Someone else's file, freed at the end.
    const other = join(disk.path, 'other');
    writeFileSync(other, Buffer.alloc(10 * MiB, 1));
    const { outbox, reserve } = open(disk);
    expect(reserve.keep()).toBe(true);
    expect(existsSync(reserve.path)).toBe(true);

    const first = fill(outbox);
    expect(first).toBeGreaterThan(1000);
    expect(disk.free()).toBeLessThan(MiB);
    // The broker takes them all: every delete goes through on the full disk.
    drain(outbox);
    expect(outbox.backlog()).toBe(0);
    expect(existsSync(reserve.path)).toBe(false);

    // New events fit in the room the delivered ones left, on the same full disk, round after round.
    for (let round = 0; round < 3; round++) {
      const again = fill(outbox);
      expect(again).toBeGreaterThan(first / 2);
      drain(outbox);
      expect(outbox.backlog()).toBe(0);
    }
  });

  it('makes the reserve again and lets the database grow once the disk has room', async () => {
    const disk = mountTmpfs(32 * MiB);
    cleanups.push(() => disk.unmount());
    const other = join(disk.path, 'other');
    writeFileSync(other, Buffer.alloc(12 * MiB, 1));
    const { outbox, reserve } = open(disk);
    expect(reserve.keep()).toBe(true);
    const first = fill(outbox);
    drain(outbox);
    expect(existsSync(reserve.path)).toBe(false);

    rmSync(other);
    // The next delete (or refused write) looks at the disk, at most once a second.
    await until(() => {
      outbox.ack([]);
      return existsSync(reserve.path);
    }, 'the disk reserve made again once the disk has room', 10_000);
    // No longer held at its size: the database takes more than the room the delivered events left.
    expect(fill(outbox)).toBeGreaterThan(first * 1.5);
  });
});
