import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cameraFrameRoi, cameraFrames } from '../../dist/bench/camera-frames.js';
import { FrameQueue, type Frame, type FrameFeed } from '../../dist/capture/index.js';
import { createLogger } from '../../dist/common/index.js';
import { configSchema } from '../../dist/config/index.js';
import { loadBundle } from '../../dist/inference/index.js';
import { ReferenceStore } from '../../dist/knn/index.js';
import { closeRuntime, openRuntime } from '../../dist/models/index.js';
import { Pipeline } from '../../dist/pipeline/index.js';
import { DecodeThreadError, ImageError, Preprocessor, RoiError } from '../../dist/preprocess/index.js';
import { openDatabase } from '../../dist/storage/index.js';
import { captureLogs } from '../capture/helpers.js';
import { tinyModel } from '../helpers/daemon.js';

captureLogs();
const framesDir = join(import.meta.dirname, '../../samples/line/frames');
const sampleFrames = readdirSync(framesDir)
  .sort()
  .slice(0, 12)
  .map((name) => ({ name, data: readFileSync(join(framesDir, name)) }));
const camera = await cameraFrames(sampleFrames);

const gray = { width: 28, height: 28, colour: 'gray' as const, mean: [0.5], std: [0.25] };
const rgb = { width: 28, height: 28, colour: 'rgb' as const, mean: [0.5, 0.4, 0.3], std: [0.25, 0.2, 0.3] };

/** A crash as the pool sees one: its first thread exits, whatever it holds. */
function crash(pre: Preprocessor): Promise<number> {
  return (pre as unknown as { pool: { threads: { worker: { terminate(): Promise<number> } }[] } }).pool.threads[0]!.worker.terminate();
}

const opened: Preprocessor[] = [];
function threaded(...args: ConstructorParameters<typeof Preprocessor>): Preprocessor {
  const pre = new Preprocessor(...args);
  opened.push(pre);
  return pre;
}
afterEach(async () => {
  await Promise.all(opened.splice(0).map((p) => p.close()));
});

describe('decode threads (preprocess.threads)', () => {
  it('give the tensors of inline decoding bit for bit, 640x480 JPEGs gray and rgb, with and without ROI', async () => {
    for (const spec of [gray, rgb]) {
      for (const roi of [cameraFrameRoi, undefined]) {
        const inline = new Preprocessor(spec, roi);
        const pool = threaded(spec, roi, undefined, { threads: 2 });
        const tensors = await Promise.all(
          camera.map(async ({ data }) => {
            const [a, b] = [inline.createTensor(), pool.createTensor()];
            await Promise.all([inline.toTensor(data, a), pool.toTensor(data, b)]);
            return [a, b] as const;
          }),
        );
        for (const [i, [a, b]] of tensors.entries()) expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer)), `${spec.colour} ${roi ? 'roi' : 'whole'} ${camera[i]!.name}`).toBe(true);
        expect(pool.liveThreads, 'the threads decoded them').toBe(2);
      }
    }
  });

  it('keep small JPEGs (the 112x112 sample frames) on the calling thread: no thread starts', async () => {
    const pre = threaded(gray, undefined, undefined, { threads: 2 });
    await pre.toTensor(sampleFrames[0]!.data, pre.createTensor());
    expect(pre.liveThreads).toBe(0);
  });

  it('send an image that is a view of a larger buffer as its own bytes', async () => {
    const pre = threaded(gray, cameraFrameRoi, undefined, { threads: 1 });
    const { data } = camera[3]!;
    const pooled = Buffer.alloc(data.length + 5000, 0xff);
    data.copy(pooled, 2000);
    const [a, b] = [pre.createTensor(), pre.createTensor()];
    await pre.toTensor(data, a);
    await pre.toTensor(pooled.subarray(2000, 2000 + data.length), b);
    expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
  });

  it('throw a corrupt or truncated large JPEG back as ImageError, as inline decoding does', async () => {
    const pre = threaded(gray, cameraFrameRoi, undefined, { threads: 2 });
    const { data } = camera[0]!;
    const truncated = data.subarray(0, Math.floor(data.length * 0.6));
    const corrupt = Buffer.from(data);
    // Garbage in the entropy-coded data, headers intact.
    for (let i = Math.floor(data.length / 2); i < data.length - 2; i += 7) corrupt[i] = 0xff;
    for (const bad of [truncated, corrupt]) {
      const err = await pre.toTensor(bad, pre.createTensor()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ImageError);
      expect((err as ImageError).message).toMatch(/^cannot decode image: /);
      expect((err as ImageError).hint).toMatch(/skipped/);
    }
    expect(pre.liveThreads, 'the threads decoded them').toBe(2);
    // The thread that refused them decodes the next frame.
    await pre.toTensor(data, pre.createTensor());
  });

  it('throw an ROI outside the frame back as RoiError with its hint', async () => {
    const pre = threaded(gray, { x: 600, y: 0, width: 100, height: 100 }, undefined, { threads: 2 });
    const err = await pre.toTensor(camera[0]!.data, pre.createTensor()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RoiError);
    expect((err as RoiError).message).toMatch(/lies outside the 640x480 image/);
    expect((err as RoiError).hint).toMatch(/keep x \+ width <= 640/);
    expect(pre.liveThreads).toBe(2);
  });

  it('fail the frames of a thread that dies with DecodeThreadError, and start a new thread for the next', async () => {
    const pre = threaded(gray, cameraFrameRoi, undefined, { threads: 1 });
    const inFlight = camera.map(({ data }) => pre.toTensor(data, pre.createTensor()).catch((e: unknown) => e));
    await crash(pre);
    const results = await Promise.all(inFlight);
    expect(results.some((r) => r instanceof DecodeThreadError)).toBe(true);
    for (const r of results) if (r !== undefined) expect((r as Error).message).toMatch(/a decode thread stopped \(exit code \d+\); \d+ frame\(s\) it held were not decoded/);
    const a = pre.createTensor();
    await pre.toTensor(camera[0]!.data, a);
    expect(pre.liveThreads).toBe(1);
  });

  it('end when closed; later frames are refused', async () => {
    const pre = threaded(gray, cameraFrameRoi, undefined, { threads: 2 });
    await pre.toTensor(camera[0]!.data, pre.createTensor());
    expect(pre.liveThreads).toBe(2);
    await pre.close();
    expect(pre.liveThreads).toBe(0);
    await expect(pre.toTensor(camera[0]!.data, pre.createTensor())).rejects.toThrow(/closed/);
  });

  it('do not keep a process alive while idle: a script that never closes them exits', async () => {
    const script = `
      import { readFileSync } from 'node:fs';
      import { Preprocessor } from ${JSON.stringify(join(import.meta.dirname, '../../dist/preprocess/index.js'))};
      const pre = new Preprocessor(${JSON.stringify(gray)}, undefined, undefined, { threads: 2 });
      await pre.toTensor(Buffer.from(process.argv[2], 'base64'), pre.createTensor());
      console.log('decoded on', pre.liveThreads, 'threads');`;
    // A file, not -e: worker threads inherit the process's flags, and --input-type would stop them.
    const dir = mkdtempSync(join(tmpdir(), 'linewatch-decode-'));
    writeFileSync(join(dir, 'decode.mjs'), script);
    const child = await promisify(execFile)(process.execPath, [join(dir, 'decode.mjs'), camera[0]!.data.toString('base64')], { timeout: 30_000 }).catch((err: { killed?: boolean; stderr?: string }) => {
      throw new Error(err.killed ? 'the script was still running after 30 s: an idle decode thread holds the process' : `the script failed: ${err.stderr}`);
    });
    rmSync(dir, { recursive: true, force: true });
    expect(child.stderr).toBe('');
    expect(child.stdout.trim()).toBe('decoded on 2 threads');
  });

  it('in the pipeline: a corrupt large JPEG counts as invalid, the frames of a dead thread as failed, and the line goes on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'linewatch-decode-'));
    const db = openDatabase(join(dir, 'linewatch.db'));
    const config = configSchema.parse({ inference: { providers: ['cpu'], workers: 1 }, preprocess: { threads: 1 } });
    const runtime = await openRuntime(await loadBundle(tinyModel), new ReferenceStore(db, 'test'), config, {}, createLogger('test'));
    try {
      const queue = new FrameQueue(64);
      const frame = (seq: number, data: Buffer, origin = `frame-${seq}`): Frame => ({ seq, capturedAt: Date.now(), data, origin });
      queue.push(frame(1, camera[0]!.data.subarray(0, Math.floor(camera[0]!.data.length * 0.6))));
      for (let seq = 2; seq <= 20; seq++) queue.push(frame(seq, camera[seq % camera.length]!.data, seq === 9 ? 'crash-after' : undefined));
      queue.close();
      // Frames 2-9 are with the one thread (it is still starting) when it dies.
      const feed: FrameFeed = {
        take: async (max) => {
          const frames = await queue.take(max);
          if (frames.some((f) => f.origin === 'crash-after')) setImmediate(() => void crash(runtime.frames));
          return frames;
        },
      };
      const pipeline = new Pipeline(feed, { acquire: () => ({ runtime, release: () => {} }) }, createLogger('test'), 8);
      await pipeline.run();
      const { invalidFrames, failed, unclassified } = pipeline.counters;
      expect(invalidFrames).toBe(1);
      expect(failed, 'frames the dead thread held').toBeGreaterThanOrEqual(1);
      // No reference is enrolled: every decoded frame is unclassified, the frames after the crash among them.
      expect(failed + unclassified).toBe(19);
      expect(runtime.frames.liveThreads).toBe(1);
    } finally {
      await closeRuntime(runtime);
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(runtime.frames.liveThreads, 'closing the runtime ends its decode threads').toBe(0);
  });
});
