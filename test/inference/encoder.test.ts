import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, setLogSink, UserError } from '../../dist/common/index.js';
import { Encoder, loadBundle, type Bundle } from '../../dist/inference/index.js';
import { editedBundle, fixtureDir, frames } from './helpers.js';

const logLines: string[] = [];
setLogSink({ write: (line) => logLines.push(line) });
const logger = createLogger('test');

const norm = (v: Float32Array): number => Math.sqrt(v.reduce((sum, x) => sum + x * x, 0));

describe('Encoder', () => {
  let bundle: Bundle;
  let encoder: Encoder;

  beforeAll(async () => {
    bundle = await loadBundle(fixtureDir);
    encoder = await Encoder.open(bundle, { logger, intraOpThreads: 1 });
  });
  afterAll(() => encoder?.close());

  it('falls back through the default providers to cpu and says so', () => {
    expect(encoder.provider).toBe('cpu');
    const warnings = logLines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'execution provider unavailable, trying the next');
    expect(warnings.map((w) => w.provider)).toEqual(['tensorrt', 'cuda']);
  });

  it('returns unit-length vectors of the manifest dimension', async () => {
    const [frame] = frames(1, encoder.inputLength);
    const vector = await encoder.embed(frame!);
    expect(vector).toBeInstanceOf(Float32Array);
    expect(vector.length).toBe(16);
    expect(norm(vector)).toBeCloseTo(1, 5);
  });

  it('gives the same vectors for a batch as for single calls', async () => {
    const inputs = frames(20, encoder.inputLength, 7);
    const batched = await encoder.embedBatch(inputs);
    for (const [i, input] of inputs.entries()) {
      const single = await encoder.embed(input);
      single.forEach((x, j) => expect(Math.abs(x - batched[i]![j]!)).toBeLessThan(1e-5));
    }
    // Different frames give different vectors: the model is not ignoring its input.
    expect(Math.abs(batched[0]![0]! - batched[1]![0]!)).toBeGreaterThan(1e-4);
  });

  it('batches concurrent embed() calls', async () => {
    const before = encoder.stats();
    await Promise.all(frames(40, encoder.inputLength, 3).map((f) => encoder.embed(f)));
    const after = encoder.stats();
    expect(after.requests - before.requests).toBe(40);
    // 40 frames, maxBatch 16: three batches (16 + 16 + 8), not 40 runs.
    expect(after.batches - before.batches).toBe(3);
  });

  it('keeps the event loop free while frames are embedded (inference runs in workers)', async () => {
    const inputs = frames(64, encoder.inputLength, 5);
    // An order, not a duration: ONNX Runtime on this thread would finish the whole batch inside
    // one turn of the loop, before a timer set after the call could fire; in workers it cannot.
    let timerFirst = 0;
    for (let round = 0; round < 30; round++) {
      let embedded = false;
      const batch = encoder.embedBatch(inputs).then(() => (embedded = true));
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (!embedded) timerFirst++;
      await batch;
    }
    expect(timerFirst).toBeGreaterThanOrEqual(10);
  });

  it('rejects a frame of the wrong size', async () => {
    await expect(encoder.embed(new Float32Array(10))).rejects.toThrow('frame tensor has 10 floats, tiny-test@1 takes 784');
  });
});

describe('Encoder.open checks', () => {
  it('refuses a model whose input name disagrees with the manifest', async () => {
    const bundle = await loadBundle(await editedBundle((m) => (m.input.name = 'pixels')));
    const err = await Encoder.open(bundle, { logger, providers: ['cpu'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/model\.onnx does not match its manifest: manifest input\.name is "pixels" but the model's inputs are "input"$/);
  });

  it('refuses a model whose shapes disagree with the manifest', async () => {
    const bundle = await loadBundle(
      await editedBundle((m) => {
        m.input.width = 32;
        m.output.dimension = 128;
      }),
    );
    await expect(Encoder.open(bundle, { logger, providers: ['cpu'] })).rejects.toThrow(
      /input "input" has shape \[N, 1, 28, 28\], manifest implies \[N, 1, 28, 32\]; output "embedding" has shape \[N, 16\], manifest implies \[N, 128\]/,
    );
  });

  it('says which providers failed when none can open the model', async () => {
    const bundle = await loadBundle(fixtureDir);
    await expect(Encoder.open(bundle, { logger, providers: ['tensorrt', 'xnnpack'] })).rejects.toThrow(
      /no execution provider could open .*model\.onnx \(tensorrt: .*; xnnpack: not in this onnxruntime-node build\)/,
    );
  });

  it('fails the frames of a crashed worker, replaces it and keeps serving', async () => {
    const encoder = await Encoder.open(await loadBundle(fixtureDir), { logger, providers: ['cpu'], workers: 2, maxBatch: 4 });
    try {
      type Slot = { running: unknown; worker: { terminate(): Promise<number>; postMessage(message: unknown): void } };
      const slots = (encoder as unknown as { slots: Slot[] }).slots;
      // The tiny model embeds 4 frames before a terminate() lands, so the batch is held back from
      // the workers: the one it goes to then dies holding it, as on an uncaught fault mid-run.
      const send = slots.map((s) => s.worker.postMessage);
      for (const slot of slots) slot.worker.postMessage = () => undefined;
      const inFlight = encoder.embedBatch(frames(4, encoder.inputLength));
      slots.forEach((slot, i) => (slot.worker.postMessage = send[i]!));
      await slots.find((s) => s.running)!.worker.terminate();
      await expect(inFlight).rejects.toThrow(/inference worker crashed \(exit code 1\); 4 frame\(s\) in flight were dropped/);
      const vectors = await encoder.embedBatch(frames(12, encoder.inputLength));
      expect(vectors).toHaveLength(12);
      expect(encoder.stats().workerCrashes).toBe(1);
      // The replacement worker starts in the background; a loaded machine may take seconds.
      await expect.poll(() => slots.length, { timeout: 30_000 }).toBe(2);
    } finally {
      await encoder.close();
    }
    await expect(encoder.embed(new Float32Array(784))).rejects.toThrow('the encoder is closed');
  });
});

describe('Encoder.close', () => {
  it('lets running batches finish: terminating a worker inside ONNX Runtime would abort the whole process', () => {
    // In a child process, since the failure it guards against is a native abort (SIGABRT), not an exception.
    const script = `
      import { Encoder, loadBundle } from '${new URL('../../dist/inference/index.js', import.meta.url).pathname}';
      import { createLogger, setLogLevel } from '${new URL('../../dist/common/index.js', import.meta.url).pathname}';
      setLogLevel('error');
      const bundle = await loadBundle('${new URL('../../models/default-fp32', import.meta.url).pathname}');
      for (let round = 0; round < 8; round++) {
        const encoder = await Encoder.open(bundle, { providers: ['cpu'], workers: 1, maxBatch: 64, logger: createLogger('test') });
        const batch = encoder.embedBatch(Array.from({ length: 512 }, (_, i) => new Float32Array(encoder.inputLength).fill(i / 512))).catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, round * 2));
        await encoder.close();
        await batch;
      }
      console.log('closed cleanly');
    `;
    const file = join(mkdtempSync(join(tmpdir(), 'linewatch-close-')), 'close.mjs');
    writeFileSync(file, script);
    const child = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 120_000 });
    expect({ signal: child.signal, status: child.status, stderr: child.stderr.slice(-500) }).toEqual({ signal: null, status: 0, stderr: '' });
    expect(child.stdout).toContain('closed cleanly');
  });
});
