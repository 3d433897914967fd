import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Frame } from '../../dist/capture/index.js';
import { createLogger } from '../../dist/common/index.js';
import { configSchema } from '../../dist/config/index.js';
import { AnomalyImages, EventRecorder, maxImagesWaiting, Outbox } from '../../dist/events/index.js';
import { loadBundle } from '../../dist/inference/index.js';
import { ReferenceStore } from '../../dist/knn/index.js';
import { closeRuntime, openRuntime, type ModelRuntime } from '../../dist/models/index.js';
import type { DecidedFrame } from '../../dist/pipeline/index.js';
import { openDatabase, type Db } from '../../dist/storage/index.js';
import { captureLogs } from '../capture/helpers.js';
import { tinyModel } from '../helpers/daemon.js';

captureLogs();
const dir = mkdtempSync(join(tmpdir(), 'linewatch-recorder-'));
const config = configSchema.parse({ inference: { providers: ['cpu'], workers: 1 } });
let db: Db;
const opened: Db[] = [];
let runtime: ModelRuntime;
beforeAll(async () => {
  db = openDatabase(join(dir, 'linewatch.db'));
  runtime = await openRuntime(await loadBundle(tinyModel), new ReferenceStore(db, 'test'), config, {}, createLogger('test'));
});
afterAll(async () => {
  await closeRuntime(runtime);
  for (const d of [db, ...opened]) d.close();
  rmSync(dir, { recursive: true, force: true });
});

const settings = { site: 's', line: 'l', camera: 'c', outboxLimit: 100_000, streams: ['events'], imageLongestSide: 256 };
const camera = { key: 's/l/c', site: 's', line: 'l', camera: 'c', roi: { x: 8, y: 8, width: 64, height: 64 } };

function anomaly(seq: number, data: Frame['data'], roi: typeof camera.roi | null): DecidedFrame {
  return {
    frame: { seq, capturedAt: Date.now(), data, origin: `frame-${seq}`, camera: { ...camera, roi } },
    vector: new Float32Array(16).fill(0.25),
    decision: { anomaly: true, score: 0.9, threshold: 0.5, label: 'scratch', unknown: false, neighbours: [] },
    model: runtime,
  };
}

/** An outbox, image store and recorder on a database of their own. */
let databases = 0;
function recorder() {
  const own = openDatabase(join(dir, `events-${++databases}.db`));
  opened.push(own);
  const outbox = new Outbox(own);
  const images = new AnomalyImages(own, config.images);
  return { outbox, images, recorder: new EventRecorder(outbox, images, settings, createLogger('test')) };
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe('EventRecorder', () => {
  it(`keeps every event but at most ${maxImagesWaiting} images waiting to be cropped when anomalies come faster than the crops`, async () => {
    const { outbox, images, recorder: r } = recorder();
    const jpeg = await sharp({ create: { width: 96, height: 96, channels: 3, background: '#808080' } }).jpeg().toBuffer();
    // One turn of the event loop decides them all: no crop can finish before the bound is reached.
    const anomalies = 3 * maxImagesWaiting;
    for (let seq = 1; seq <= anomalies; seq++) r.consume(anomaly(seq, jpeg, camera.roi));
    await nextTurn();
    expect(outbox.backlog()).toBe(anomalies);
    const queued = r.status().images;
    expect(queued.waiting).toBeLessThanOrEqual(maxImagesWaiting);
    expect(queued.skipped).toBe(anomalies - maxImagesWaiting);

    await r.flush();
    const done = r.status().images;
    expect(done).toMatchObject({ waiting: 0, failed: 0, count: maxImagesWaiting });
    expect(images.stats().count).toBe(maxImagesWaiting);
  });

  it('keeps a raw frame at the model size as a PNG in its event\'s transaction, without waiting for a crop', async () => {
    const { images, recorder: r } = recorder();
    // Gray rows padded to a multiple of 4 bytes, as GStreamer hands them over: 30 pixels, stride 32.
    const width = 30;
    const height = 28;
    const stride = 32;
    const pixels = Buffer.alloc(stride * height, 0xee);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) pixels[y * stride + x] = (x * 7 + y * 3) % 256;
    const raw = { width, height, channels: 1 as const, stride, pixels, cropped: true };
    r.consume(anomaly(1, raw, camera.roi));
    await nextTurn();
    expect(r.status().images).toMatchObject({ count: 1, waiting: 0 });

    const [stored] = images.list({ limit: 1 });
    const kept = images.get(stored!.eventId)!;
    expect(kept.contentType).toBe('image/png');
    expect(await sharp(kept.image).metadata()).toMatchObject({ format: 'png', width, height, channels: 1 });
    const decoded = await sharp(kept.image).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
    expect(decoded.info).toMatchObject({ width, height, channels: 1 });
    for (let y = 0; y < height; y++) expect(decoded.data.subarray(y * width, (y + 1) * width).equals(pixels.subarray(y * stride, y * stride + width))).toBe(true);
  });
});
