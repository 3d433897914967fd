import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { cameraFrameRoi, cameraFrames, cameraFrameSize } from '../../dist/bench/camera-frames.js';
import { createFrameSource, type Frame } from '../../dist/capture/index.js';
import { createLogger } from '../../dist/common/index.js';
import { configSchema } from '../../dist/config/index.js';
import { loadBundle } from '../../dist/inference/index.js';
import { ReferenceStore } from '../../dist/knn/index.js';
import { closeRuntime, enroll, listLabeledImages, openRuntime } from '../../dist/models/index.js';
import { Preprocessor } from '../../dist/preprocess/index.js';
import { openDatabase } from '../../dist/storage/index.js';
import { captureLogs, waitFor } from './helpers.js';

captureLogs();
const root = join(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'linewatch-raw-vs-jpeg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('raw camera frames and JPEG frames of the same scene', () => {
  it('are classified alike by the default model: 640x480 scenes with the item in the ROI, GStreamer cropping and scaling vs JPEG q85 decoded by linewatch', async () => {
    const count = 60;
    const items = readdirSync(join(root, 'samples/line/frames'))
      .sort()
      .slice(0, count)
      .map((name) => ({ name, data: readFileSync(join(root, 'samples/line/frames', name)) }));
    const jpegs = await cameraFrames(items, 'jpeg');
    const pngs = await cameraFrames(items, 'png');
    pngs.forEach((frame, i) => writeFileSync(join(dir, `${String(i).padStart(6, '0')}.png`), frame.data));

    // The references are item images (no ROI); the camera frames are read with the ROI around the item.
    const config = configSchema.parse({ inference: { providers: ['cpu'], workers: 1 } });
    const db = openDatabase(join(dir, 'linewatch.db'));
    const store = new ReferenceStore(db, 'test');
    const runtime = await openRuntime(await loadBundle(join(root, 'models/default-int8')), store, config, {}, createLogger('test'));
    try {
      const enrolled = await enroll(await listLabeledImages(join(root, 'samples/line/references')), runtime, store);
      expect(enrolled.added).toBeGreaterThan(100);
      // The index hears of new references a turn of the event loop after their commit.
      await waitFor(() => runtime.classifier.notReady() === undefined, 10_000, 'the references in the index');
      const frames = new Preprocessor(runtime.bundle.manifest.input, cameraFrameRoi);
      const classify = async (image: Frame['data']) => {
        const tensor = frames.createTensor();
        await frames.toTensor(image, tensor);
        return runtime.classifier.classify(await runtime.encoder.embed(tensor));
      };

      // The lossless scenes played by a real GStreamer pipeline that crops the ROI and scales it to 28x28 GRAY8.
      const source = createFrameSource({
        kind: 'gstreamer',
        preset: 'pipeline',
        pipeline: `multifilesrc location=${dir}/%06d.png index=0 stop-index=${count - 1} caps=image/png,framerate=30/1 ! pngdec ! videoconvert`,
        ...cameraFrameSize,
        output: { width: 28, height: 28, colour: 'gray', roi: cameraFrameRoi },
        restartInitialMs: 50,
      });
      const raw: Frame[] = [];
      await source.start((frame) => void raw.push(frame));
      await waitFor(() => raw.length >= count, 60_000, `${count} raw frames`);
      await source.stop();

      let agree = 0;
      let scoreGap = 0;
      for (let i = 0; i < count; i++) {
        const a = await classify(raw[i]!.data);
        const b = await classify(jpegs[i]!.data);
        if (a.label === b.label) agree++;
        scoreGap = Math.max(scoreGap, Math.abs(a.score - b.score));
      }
      // JPEG q85 and the two scalers (GStreamer's multi-tap bilinear from full size, linewatch's
      // 1/8 DCT decode) move a few items near a decision boundary: at least 90% must agree.
      expect(agree / count).toBeGreaterThanOrEqual(0.9);
      console.log(`raw vs jpeg: ${agree}/${count} labels agree, largest score gap ${scoreGap.toFixed(3)}`);
    } finally {
      await closeRuntime(runtime);
      db.close();
    }
  }, 120_000);
});
