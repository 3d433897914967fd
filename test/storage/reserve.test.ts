import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAnomalyEvent, Outbox, OutboxFullError } from '../../dist/events/index.js';
import { DiskReserve, openDatabase } from '../../dist/storage/index.js';
import { decision } from '../events/fixtures.js';
import { until } from '../ops/helpers.js';
import { canMountTmpfs, MiB, mountTmpfs, type SmallDisk } from '../helpers/tmpfs.js';
import { tempDir } from '../helpers/daemon.js';

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

/**
 * A 32 MiB tmpfs holding someone else's file of `otherBytes`, and the outbox with a 4 MiB reserve
 * filled until the disk is full; `first` is how many events it took.
 */
function fullDisk(otherBytes: number): { disk: SmallDisk; other: string; outbox: Outbox; reserve: DiskReserve; first: number } {
  const disk = mountTmpfs(32 * MiB);
  cleanups.push(() => disk.unmount());
  const other = join(disk.path, 'other');
  writeFileSync(other, Buffer.alloc(otherBytes, 1));
  const db = openDatabase(join(disk.path, 'linewatch.db'));
  cleanups.push(() => db.close());
  const reserve = new DiskReserve(db, join(disk.path, 'disk-reserve'), { bytes: 4 * MiB });
  expect(reserve.keep()).toBe(true);
  expect(existsSync(reserve.path)).toBe(true);
  const outbox = new Outbox(db, reserve);
  return { disk, other, outbox, reserve, first: fill(outbox) };
}

describe.skipIf(!canMountTmpfs)('disk full, on a real 32 MiB tmpfs (needs root)', () => {
  it('deletes delivered events on a full disk, stores new ones in their room again and again', () => {
    const { disk, outbox, reserve, first } = fullDisk(10 * MiB);
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
    const { other, outbox, reserve, first } = fullDisk(12 * MiB);
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

  it('lets a refused write through once the disk has room, without waiting for a delete', async () => {
    const { other, outbox, reserve } = fullDisk(12 * MiB);
    drain(outbox);
    // The room the delivered events left is taken again: the database is full at its held size.
    fill(outbox);
    rmSync(other);
    // The write's own failure looks at the disk (at most once a second), lifts the cap and goes through.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    outbox.transaction(() => {
      for (let i = 0; i < 50; i++) outbox.append(createAnomalyEvent(decision(next++)));
    });
    expect(existsSync(reserve.path)).toBe(true);
  });
});

describe('an ack that fails for another reason than a full disk', () => {
  it('is rethrown as it is: the reserve stays and the database is not held at its size', () => {
    const dir = tempDir();
    const db = openDatabase(join(dir, 'linewatch.db'));
    cleanups.push(() => db.close());
    const reserve = new DiskReserve(db, join(dir, 'disk-reserve'), { bytes: MiB });
    expect(reserve.keep()).toBe(true);
    const outbox = new Outbox(db, reserve);
    const seq = outbox.append(createAnomalyEvent(decision(next++)));
    const limit = db.pragma('max_page_count', { simple: true });
    db.exec("CREATE TRIGGER kept BEFORE DELETE ON events_outbox BEGIN SELECT RAISE(ABORT, 'kept by a test trigger'); END");
    expect(() => outbox.ack([seq])).toThrow('kept by a test trigger');
    expect(existsSync(reserve.path)).toBe(true);
    expect(db.pragma('max_page_count', { simple: true })).toBe(limit);
    expect(outbox.backlog()).toBe(1);
  });
});
