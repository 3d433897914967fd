import { readFileSync } from 'node:fs';
import { createLogger } from '../common/index.js';
import { Encoder, loadBundle, type Bundle } from '../inference/index.js';
import { Preprocessor } from '../preprocess/index.js';
import type { BenchSettings } from './settings.js';
import { distribution, round, roundDistribution, saturate, type Distribution } from './stats.js';

export interface EncoderRun {
  model: string;
  precision: string;
  provider: string;
  /** ONNX Runtime intra-op threads of the one worker session. */
  threads: number;
  workers: number;
  batch: number;
  imagesPerSecond: number;
  /** Time of one session.run of `batch` images, as the caller sees it (queue, worker hand-off, run). */
  latencyMs: Distribution;
}

export interface EncoderBundleResult {
  model: string;
  precision: string;
  input: string;
  runs: EncoderRun[];
  batch1: EncoderRun;
  best: EncoderRun;
}

export interface EncoderSection {
  fp32: EncoderBundleResult;
  int8: EncoderBundleResult;
  /** INT8 images/s over FP32 images/s, each at its best batch. */
  int8Speedup: number;
  /** The CPU's INT8 dot-product and matrix instructions, as /proc/cpuinfo names them (none listed: none found). */
  int8CpuFlags: string[];
  /** The encoder as the daemon runs it (its workers, maxBatch, maxWaitMs, in-flight frames): the e2e ceiling. */
  daemonSettings: EncoderRun & { maxWaitMs: number; inFlight: number; meanBatch: number; cpuMsPerImage: number };
}

/**
 * Images/s of each bundle alone: one worker, the daemon's thread count, batches of 1 up to 128.
 * Each batch is submitted whole and waited for, so a figure is the ceiling of classification at
 * that batch with no other work on the CPU.
 */
export async function benchEncoder(settings: BenchSettings, tensors: (bundle: Bundle) => Promise<Float32Array[]>): Promise<EncoderSection> {
  const batches = settings.quick ? [1, 16] : [1, 2, 4, 8, 16, 32, 64, 128];
  const fp32 = await benchBundle(settings, settings.fp32Dir, batches, tensors);
  const int8 = await benchBundle(settings, settings.int8Dir, batches, tensors);
  return {
    fp32,
    int8,
    int8Speedup: round(int8.best.imagesPerSecond / fp32.best.imagesPerSecond),
    int8CpuFlags: int8CpuFlags(),
    daemonSettings: await benchDaemonSettings(settings, settings.int8Dir, tensors),
  };
}

async function benchBundle(
  settings: BenchSettings,
  dir: string,
  batches: number[],
  tensors: (bundle: Bundle) => Promise<Float32Array[]>,
): Promise<EncoderBundleResult> {
  const bundle = await loadBundle(dir);
  const inputs = await tensors(bundle);
  const runs: EncoderRun[] = [];
  for (const batch of batches) {
    const encoder = await openEncoder(bundle, settings, { workers: 1, maxBatch: batch, maxWaitMs: 0 });
    try {
      const frames = Array.from({ length: batch }, (_, i) => inputs[i % inputs.length]!);
      const result = await saturate(1, settings.windowS, settings.warmupS, async () => {
        await encoder.embedBatch(frames);
        return batch;
      });
      runs.push(encoderRun(bundle, encoder, settings, 1, batch, result));
    } finally {
      await encoder.close();
    }
  }
  const best = runs.reduce((a, b) => (b.imagesPerSecond > a.imagesPerSecond ? b : a));
  const { input } = bundle.manifest;
  return {
    model: bundle.key,
    precision: bundle.manifest.precision,
    input: `${input.colour} ${input.width}x${input.height}`,
    runs,
    batch1: runs.find((r) => r.batch === 1)!,
    best,
  };
}

/** The encoder with the daemon's own settings, fed by as many concurrent frames as the pipeline keeps in flight. */
async function benchDaemonSettings(settings: BenchSettings, dir: string, tensors: (bundle: Bundle) => Promise<Float32Array[]>) {
  const bundle = await loadBundle(dir);
  const inputs = await tensors(bundle);
  const { workers, maxBatch, maxWaitMs } = settings.inference;
  const encoder = await openEncoder(bundle, settings, { workers, maxBatch, maxWaitMs });
  try {
    // CPU of every thread (the workers' ONNX Runtime threads are this process's), per image embedded.
    const cpu = process.cpuUsage();
    const result = await saturate(settings.inFlight, settings.windowS, settings.warmupS, async (lane) => {
      await encoder.embed(inputs[lane % inputs.length]!);
      return 1;
    });
    const used = process.cpuUsage(cpu);
    const stats = encoder.stats();
    // Latency here is per frame; meanBatch is the batch the encoder actually formed from them.
    const run = encoderRun(bundle, encoder, settings, workers, maxBatch, result);
    const cpuMsPerImage = round((used.user + used.system) / 1000 / stats.requests);
    return { ...run, meanBatch: round(stats.requests / stats.batches), maxWaitMs, inFlight: settings.inFlight, cpuMsPerImage };
  } finally {
    await encoder.close();
  }
}

function openEncoder(bundle: Bundle, settings: BenchSettings, o: { workers: number; maxBatch: number; maxWaitMs: number }): Promise<Encoder> {
  return Encoder.open(bundle, {
    providers: settings.inference.providers,
    intraOpThreads: settings.inference.threads,
    workers: o.workers,
    maxBatch: o.maxBatch,
    maxWaitMs: o.maxWaitMs,
    logger: createLogger('bench.inference'),
  });
}

function encoderRun(
  bundle: Bundle,
  encoder: Encoder,
  settings: BenchSettings,
  workers: number,
  batch: number,
  result: { items: number; seconds: number; latenciesMs: number[] },
): EncoderRun {
  return {
    model: bundle.key,
    precision: bundle.manifest.precision,
    provider: encoder.provider,
    threads: settings.inference.threads,
    workers,
    batch,
    imagesPerSecond: round(result.items / result.seconds),
    latencyMs: roundDistribution(distribution(result.latenciesMs)),
  };
}

/**
 * What INT8 convolutions can run on: x86 VNNI (avx512_vnni, avx_vnni) and AMX, Arm's dot product
 * and int8 matrix multiply (asimddp, i8mm). Without them INT8 gains little over FP32.
 */
function int8CpuFlags(): string[] {
  let cpuinfo: string;
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return []; // not Linux
  }
  const flags = /^(?:flags|Features)\s*:(.*)$/m.exec(cpuinfo)?.[1]?.trim().split(/\s+/) ?? [];
  return flags.filter((flag) => /vnni|^amx|^asimddp$|^i8mm$/.test(flag));
}

/** Preprocessed tensors of the sample frames for a bundle's input (cached per input spec). */
export function tensorSource(frames: readonly { data: Buffer }[], settings: BenchSettings): (bundle: Bundle) => Promise<Float32Array[]> {
  const cache = new Map<string, Promise<Float32Array[]>>();
  return (bundle) => {
    const key = JSON.stringify(bundle.manifest.input);
    let tensors = cache.get(key);
    if (!tensors) {
      const pre = new Preprocessor(bundle.manifest.input, settings.roi ?? undefined);
      tensors = Promise.all(
        frames.slice(0, 256).map(async (f) => {
          const t = pre.createTensor();
          await pre.toTensor(f.data, t);
          return t;
        }),
      );
      cache.set(key, tensors);
    }
    return tensors;
  };
}
