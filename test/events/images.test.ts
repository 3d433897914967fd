import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AnomalyImages, anomalyImage } from '../../dist/events/index.js';
import { openDatabase, type Db } from '../../dist/storage/index.js';

const DAY_MS = 24 * 60 * 60 * 1000;
const T0 = 1_700_000_000_000;
const roomy = { maxCount: 1_000_000, maxBytes: 1024 ** 4, maxAgeDays: 3650 };

let dir: string;
let path: string;
let db: Db;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'linewatch-images-'));
  path = join(dir, 'linewatch.db');
  db = openDatabase(path);
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Item `i`: created at T0 + i seconds, an image of `imageBytes` bytes, a 4-dimensional vector (16 bytes). */
function item(i: number, options: { label?: string; imageBytes?: number } = {}) {
  return {
    eventId: `event-${String(i).padStart(6, '0')}`,
    createdAt: T0 + i * 1000,
    contentType: 'image/png',
    image: Buffer.alloc(options.imageBytes ?? 100, i % 256),
    modelKey: 'fmnist-triplet@1.0.0',
    vector: new Float32Array([i, 0.5, -0.25, 1e-7]),
    label: options.label ?? 'scratch',
    score: 0.75,
  };
}

function addMany(images: AnomalyImages, n: number, options?: { imageBytes?: number }): void {
  db.transaction(() => {
    for (let i = 0; i < n; i++) images.add(item(i, options));
  })();
}

describe('AnomalyImages', () => {
  it('gives back the image and vector it stored', () => {
    const images = new AnomalyImages(db, roomy);
    const stored = item(7);
    images.add(stored);
    const got = images.get(stored.eventId)!;
    expect(got).toMatchObject({
      eventId: stored.eventId,
      createdAt: stored.createdAt,
      contentType: 'image/png',
      modelKey: 'fmnist-triplet@1.0.0',
      label: 'scratch',
      score: 0.75,
    });
    expect(got.image.equals(stored.image)).toBe(true);
    expect(got.vector).toBeInstanceOf(Float32Array);
    expect(Array.from(got.vector)).toEqual(Array.from(stored.vector));
    expect(images.get('no-such-event')).toBeUndefined();
  });

  it('stores nothing when the caller\'s transaction rolls back, and counts what commits', () => {
    const images = new AnomalyImages(db, roomy);
    expect(() =>
      db.transaction(() => {
        images.add(item(1));
        throw new Error('the outbox row failed');
      })(),
    ).toThrow('the outbox row failed');
    expect(images.get(item(1).eventId)).toBeUndefined();
    expect(images.stats()).toEqual({ count: 0, bytes: 0, oldest: null });

    db.transaction(() => images.add(item(2)))();
    expect(images.stats()).toEqual({ count: 1, bytes: 116, oldest: item(2).createdAt });
  });

  it('keeps at most maxCount images, removing the oldest', () => {
    const images = new AnomalyImages(db, { ...roomy, maxCount: 3 });
    addMany(images, 5);
    expect(images.prune(T0)).toEqual({ removed: 2, bytes: 2 * 116 });
    expect(images.list().map((i) => i.eventId)).toEqual([item(4).eventId, item(3).eventId, item(2).eventId]);
    expect(images.prune(T0)).toEqual({ removed: 0, bytes: 0 });
  });

  it('keeps at most maxBytes, removing the oldest', () => {
    // Rows of 116 bytes: 1000 bytes hold 8 of them.
    const images = new AnomalyImages(db, { ...roomy, maxBytes: 1000 });
    addMany(images, 10);
    expect(images.prune(T0)).toEqual({ removed: 2, bytes: 2 * 116 });
    expect(images.stats()).toEqual({ count: 8, bytes: 8 * 116, oldest: item(2).createdAt });
  });

  it('removes images older than maxAgeDays', () => {
    const images = new AnomalyImages(db, { ...roomy, maxAgeDays: 1 });
    addMany(images, 10);
    // Items 0..3 are older than one day at this time; item 4 is exactly one day old and stays.
    const now = item(4).createdAt + DAY_MS;
    expect(images.prune(now).removed).toBe(4);
    expect(images.stats().oldest).toBe(item(4).createdAt);
  });

  it('prunes thousands of rows in batches and keeps its totals right, also after reopening', () => {
    const images = new AnomalyImages(db, { ...roomy, maxCount: 100 });
    addMany(images, 2_100);
    expect(images.stats()).toMatchObject({ count: 2_100, bytes: 2_100 * 116 });
    expect(images.prune(T0)).toEqual({ removed: 2_000, bytes: 2_000 * 116 });
    expect(images.stats()).toEqual({ count: 100, bytes: 100 * 116, oldest: item(2_000).createdAt });

    images.add(item(5_000, { imageBytes: 1000 }));
    db.close();
    db = openDatabase(path);
    const reopened = new AnomalyImages(db, { ...roomy, maxCount: 100 });
    expect(reopened.stats()).toEqual({ count: 101, bytes: 100 * 116 + 1016, oldest: item(2_000).createdAt });
    expect(reopened.prune(T0)).toEqual({ removed: 1, bytes: 116 });
    expect(reopened.stats()).toMatchObject({ count: 100, bytes: 99 * 116 + 1016 });
  });

  it('lists newest first, by label, a page at a time, without image or vector', () => {
    const images = new AnomalyImages(db, roomy);
    db.transaction(() => {
      for (let i = 0; i < 6; i++) images.add(item(i, { label: i % 2 === 0 ? 'scratch' : 'dent' }));
    })();
    const all = images.list();
    expect(all.map((i) => i.eventId)).toEqual([5, 4, 3, 2, 1, 0].map((i) => item(i).eventId));
    expect(all[0]).toEqual({
      eventId: item(5).eventId,
      createdAt: item(5).createdAt,
      contentType: 'image/png',
      bytes: 116,
      modelKey: 'fmnist-triplet@1.0.0',
      label: 'dent',
      score: 0.75,
    });
    expect(images.list({ label: 'scratch' }).map((i) => i.eventId)).toEqual([4, 2, 0].map((i) => item(i).eventId));
    expect(images.list({ limit: 2, before: item(4).createdAt }).map((i) => i.eventId)).toEqual(
      [3, 2].map((i) => item(i).eventId),
    );
  });
});

describe('anomalyImage', () => {
  it('crops the ROI and scales it to fit the longest side, as PNG', async () => {
    const frame = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#808080' } }).jpeg().toBuffer();
    const { image, contentType } = await anomalyImage(frame, { x: 40, y: 20, width: 400, height: 300 }, 256);
    expect(contentType).toBe('image/png');
    expect(await sharp(image).metadata()).toMatchObject({ format: 'png', width: 256, height: 192 });
  });

  it('keeps a small frame without an ROI byte for byte', async () => {
    // Uncompressed, so a re-encode (at sharp's default level) could not give the same bytes.
    const frame = await sharp({ create: { width: 100, height: 60, channels: 3, background: '#336699' } })
      .png({ compressionLevel: 0 })
      .toBuffer();
    const kept = await anomalyImage(frame, undefined, 256);
    expect(kept.contentType).toBe('image/png');
    expect(kept.image.equals(frame)).toBe(true);

    const large = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#336699' } }).jpeg().toBuffer();
    const scaled = await anomalyImage(large, undefined, 256);
    expect(scaled.contentType).toBe('image/png');
    expect(await sharp(scaled.image).metadata()).toMatchObject({ format: 'png', width: 256, height: 192 });
  });
});
