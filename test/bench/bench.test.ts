import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Proves `linewatch bench --quick` runs every section on real parts (tiny fixture model, frames
// drawn here, a real mosquitto). It checks the document's shape, never the speed: figures from a
// shared CI machine are not results.
const root = new URL('../../', import.meta.url).pathname;
const tinyModel = join(root, 'test/fixtures/tiny-model');

describe('linewatch bench --quick --json', () => {
  let frames: string;
  let references: string;

  beforeAll(async () => {
    frames = mkdtempSync(join(tmpdir(), 'linewatch-bench-frames-'));
    // Camera-like frames: a bright item of varying width on a dark, noisy belt.
    for (let i = 0; i < 40; i++) {
      const pixels = Buffer.alloc(112 * 112 * 3);
      for (let p = 0; p < 112 * 112; p++) {
        const x = p % 112;
        const y = Math.floor(p / 112);
        const inside = Math.abs(x - 56) < 15 + i && Math.abs(y - 56) < 30;
        pixels.fill((inside ? 180 : 20) + ((p * 7 + i * 13) % 16), p * 3, p * 3 + 3);
      }
      await sharp(pixels, { raw: { width: 112, height: 112, channels: 3 } }).jpeg({ quality: 90 }).toFile(join(frames, `${String(i).padStart(6, '0')}-good.jpg`));
    }
    // The line's references: the same items, good, so the sample-line run decides every frame good.
    references = mkdtempSync(join(tmpdir(), 'linewatch-bench-references-'));
    mkdirSync(join(references, 'good'));
    cpSync(frames, join(references, 'good'), { recursive: true });
  });
  afterAll(() => {
    rmSync(frames, { recursive: true, force: true });
    rmSync(references, { recursive: true, force: true });
  });

  it('prints one document with every section, in numbers', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(root, 'dist/cli/main.js'), 'bench', '--quick', '--json', '--fp32', tinyModel, '--int8', tinyModel, '--frames', frames, '--references', references],
      { maxBuffer: 16 * 1024 * 1024, timeout: 150_000 },
    );
    const doc = JSON.parse(stdout);
    const positive = (x: unknown) => expect(typeof x === 'number' && Number.isFinite(x) && x > 0, String(x)).toBe(true);
    const finite = (x: unknown) => expect(typeof x === 'number' && Number.isFinite(x), String(x)).toBe(true);

    for (const bundle of [doc.encoder.fp32, doc.encoder.int8]) {
      expect(bundle.runs.length).toBeGreaterThan(0);
      for (const run of [bundle.batch1, bundle.best]) {
        expect(run.provider).toBe('cpu');
        positive(run.imagesPerSecond);
        positive(run.latencyMs.p50);
        positive(run.latencyMs.p99);
      }
    }
    positive(doc.encoder.int8Speedup);
    // The INT8 instructions reported are the CPU's own (the INT8 figure means little without them).
    const cpuFlags = new Set(/^(?:flags|Features)\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))![1]!.trim().split(/\s+/));
    for (const flag of ['avx512_vnni', 'avx_vnni', 'amx_int8', 'asimddp', 'i8mm']) expect(doc.encoder.int8CpuFlags.includes(flag), flag).toBe(cpuFlags.has(flag));
    positive(doc.encoder.daemonSettings.imagesPerSecond);
    positive(doc.encoder.daemonSettings.cpuMsPerImage);

    positive(doc.preprocess.imagesPerSecond);
    positive(doc.preprocess.threadpool);
    // sharp and the fast path on the sample frames and on 640x480 camera JPEGs, then raw camera frames.
    expect(doc.preprocess.runs.map((r: { decoder: string }) => r.decoder)).toEqual(['sharp', 'fast', 'sharp', 'fast', 'fast']);
    // The daemon's decode threads (preprocess.threads: one per core) take the 640x480 JPEGs only.
    expect(doc.preprocess.decodeThreads).toBe(availableParallelism());
    expect(doc.preprocess.runs.map((r: { threads: number }) => r.threads)).toEqual([0, 0, 0, availableParallelism(), 0]);
    // A quick run's window is 0.4 s: on a busy machine a cold JIT can finish no 640x480 frame in it.
    for (const run of doc.preprocess.runs) {
      finite(run.imagesPerSecond);
      positive(run.cpuMsPerImage);
    }
    finite(doc.preprocess.speedup.sampleFrames);
    finite(doc.preprocess.speedup.cameraFrames);
    expect(doc.targets.filter((t: { name: string }) => t.name.startsWith('intake speed-up'))).toHaveLength(2);

    positive(doc.e2e.framesPerSecond);
    finite(doc.e2e.latencyMs.p50);
    finite(doc.e2e.latencyMs.p99);
    expect(doc.e2e.saturated.latencyMs.samples).toBeGreaterThan(0);
    positive(doc.e2e.paced.framesPerSecond);
    if (doc.e2e.volatileState) positive(doc.e2e.volatileState.framesPerSecond);
    positive(doc.e2e.saturated.cpuMsPerFrame);
    // The sample line (samples/line/references beside the frames): only its anomalies become events.
    positive(doc.e2e.sampleLine.framesPerSecond);
    positive(doc.e2e.sampleLine.cpuMsPerFrame);
    expect(doc.e2e.sampleLine.eventsPerSecond).toBeLessThan(doc.e2e.sampleLine.framesPerSecond);
    expect(doc.targets.map((t: { name: string }) => t.name)).toContain('e2e on the sample line');
    // Both e2e targets say how many frames/s the cores allow at all: the stages' CPU per frame, added.
    const bound = (availableParallelism() * 1000) / (doc.encoder.daemonSettings.cpuMsPerImage + doc.preprocess.runs[1].cpuMsPerImage);
    for (const name of ['e2e overlaps the stages (every frame an event)', 'e2e on the sample line']) {
      const detail: string = doc.targets.find((t: { name: string }) => t.name === name).detail;
      const stated = new RegExp(`lets ${availableParallelism()} cores decide at most ([\\d.]+) frames/s`).exec(detail);
      expect(stated, detail).not.toBeNull();
      expect(Math.abs(Number(stated![1]) / bound - 1)).toBeLessThan(0.01);
    }
    // Four GStreamer test cameras of the frames' size through one pipeline: each one's frames decided.
    expect(doc.e2e.cameras.frameSize).toBe('112x112');
    expect(doc.e2e.cameras.perCamera.map((c: { camera: string }) => c.camera)).toEqual(['site/line/cam-1', 'site/line/cam-2', 'site/line/cam-3', 'site/line/cam-4']);
    for (const camera of doc.e2e.cameras.perCamera) positive(camera.framesPerSecond);
    positive(doc.e2e.cameras.framesPerSecond);
    finite(doc.e2e.cameras.shareSpreadPct);
    positive(doc.e2e.cameras.memory.steadyMb);

    expect(doc.knn.sizes.map((s: { references: number }) => s.references)).toEqual([1000, 10_000]);
    for (const size of doc.knn.sizes) {
      positive(size.exactMs.mean);
      positive(size.hnswMs.mean);
      expect(size.recallAt10).toBeGreaterThan(0);
      expect(size.recallAt10).toBeLessThanOrEqual(1);
    }
    positive(doc.knn.crossover.references);
    positive(doc.knn.ready.wallMs);
    positive(doc.knn.ready.cpuMs);
    // The ready child and the daemon child both run as the systemd unit sets the daemon up.
    expect(doc.knn.ready.allocator).toBe(doc.memory.allocator);
    expect(doc.knn.ready.loader).toMatch(/per-point seeks/);

    positive(doc.memory.steadyMb);
    finite(doc.memory.maxDeviationPct);
    // The sample farthest from steady, and when: its RSS is the deviation stated.
    for (const memory of [doc.memory, doc.e2e.cameras.memory]) {
      expect(Math.abs(memory.largestDeviation.mb - memory.steadyMb) / memory.steadyMb * 100).toBeCloseTo(memory.maxDeviationPct, 0);
      expect(memory.largestDeviation.atS).toBeGreaterThanOrEqual(0);
      expect(memory.largestDeviation.atS).toBeLessThanOrEqual(memory.durationS + 1);
    }

    // The swap section: a push, then phase A without a change and phase B with an activation and a rollback.
    for (const key of ['maxLatencyMsWithoutSwap', 'p99LatencyMsWithoutSwap', 'maxLatencyMsDuringSwap', 'swapDurationMs', 'pauseRatio', 'maxLatencyMsDuringPush', 'pushDurationMs', 'framesPerSecondWithoutSwap', 'framesPerSecondWithSwaps']) {
      positive(doc.swap[key]);
    }
    expect(doc.swap.swaps.map((c: { action: string }) => c.action)).toEqual(['activate', 'rollback']);
    expect(doc.swap.swaps[0].key).toBe(doc.swap.settings.started);
    expect(doc.swap.swaps[1].key).toBe(doc.swap.settings.pushed);
    expect(doc.swap.push.key).toBe(doc.swap.settings.pushed);
    expect(doc.swap.settings.pushed).not.toBe(doc.swap.settings.started);
    for (const change of [doc.swap.push, ...doc.swap.swaps]) {
      expect(change.framesDecided).toBeGreaterThan(0);
      expect(change.framesDropped).toBeGreaterThanOrEqual(0);
    }
    expect(doc.swap.withoutSwap.latencyMs.samples).toBeGreaterThan(0);

    expect(doc.targets.length).toBe(14);
    expect(doc.targets.map((t: { name: string }) => t.name)).toEqual(expect.arrayContaining(['swap pause', 'several cameras: aggregate', 'several cameras: fair shares', 'RSS steady with several cameras']));
    for (const target of doc.targets) {
      expect(typeof target.met).toBe('boolean');
      finite(target.value);
    }
  }, 180_000);
});
