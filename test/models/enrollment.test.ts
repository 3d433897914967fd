import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, setLogLevel } from '../../dist/common/index.js';
import { configSchema } from '../../dist/config/index.js';
import { OverrideStore, ReferenceStore } from '../../dist/knn/index.js';
import { embedImages, ModelManager, type LabeledImage } from '../../dist/models/index.js';
import { openDatabase, type Db } from '../../dist/storage/index.js';
import { repoRoot, tempDir } from '../helpers/daemon.js';
import { int8Bundle } from './bundles.js';

let db: Db;
let models: ModelManager;
beforeAll(async () => {
  setLogLevel('error');
  const config = configSchema.parse({ stateDir: tempDir(), model: int8Bundle });
  db = openDatabase(join(config.stateDir, 'linewatch.db'));
  const store = new ReferenceStore(db);
  models = await ModelManager.open(db, store, new OverrideStore(db), config, createLogger('test'), 'command');
});
afterAll(async () => {
  await models.close();
  db.close();
});

describe('embedImages', () => {
  // 150 frames are three chunks (64, 64, 22): the next chunk is read while the current one embeds.
  const framesDir = join(repoRoot, 'samples/line/frames');
  const frames = readdirSync(framesDir).filter((n) => n.endsWith('.jpg')).sort().slice(0, 150);

  it('yields every image in the order given, with the vector it has alone, and the unreadable ones as errors, with and without blocking reads', async () => {
    const dir = tempDir();
    const fifo = join(dir, 'fifo.jpg');
    execFileSync('mkfifo', [fifo]);
    const images: LabeledImage[] = frames.map((name) => ({ path: join(framesDir, name), label: 'good' }));
    images.splice(70, 0, { path: join(dir, 'missing.jpg'), label: 'good' });
    images.splice(130, 0, { path: fifo, label: 'good' });
    const model = models.active;
    const alone = async (path: string) => {
      const tensor = model.frames.createTensor();
      await model.frames.toTensor(readFileSync(path), tensor);
      return model.encoder.embed(tensor);
    };
    for (const blockingReads of [false, true]) {
      const items = [];
      for await (const item of embedImages(images, model, { blockingReads })) items.push(item);
      expect(items.map((item) => item.image.path)).toEqual(images.map((image) => image.path));
      expect(items.flatMap((item, i) => ('error' in item ? [i] : []))).toEqual([70, 130]);
      expect('error' in items[70]! && items[70].error).toMatch(/does not exist/);
      expect('error' in items[130]! && items[130].error).toMatch(/FIFO/);
      for (const i of [0, 69, 71, 129, 131, images.length - 1]) {
        const item = items[i]!;
        if ('error' in item) throw new Error(`image ${i} failed: ${item.error}`);
        const want = await alone(item.image.path);
        item.vector.forEach((value, j) => expect(value).toBeCloseTo(want[j]!, 5));
      }
    }
  });
});
