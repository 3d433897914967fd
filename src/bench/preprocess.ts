import sharp from 'sharp';
import { loadBundle } from '../inference/index.js';
import { Preprocessor } from '../preprocess/index.js';
import type { BenchSettings } from './settings.js';
import { distribution, round, roundDistribution, saturate, type Distribution } from './stats.js';

export interface PreprocessSection {
  /** Decode + resize + normalise of the sample frames, alone: the ceiling of frame intake. */
  imagesPerSecond: number;
  latencyMs: Distribution;
  /** Frames decoded at once: the daemon's in-flight count. */
  inFlight: number;
  /** libuv pool threads that run sharp's work (UV_THREADPOOL_SIZE, default 4). */
  threadpool: number;
  /** libvips threads per image (the preprocess module sets 1). */
  sharpConcurrency: number;
  frames: { count: number; folder: string; size: string };
  input: string;
}

/** Preprocess alone, as the pipeline runs it: `inFlight` frames at a time, each into its own tensor. */
export async function benchPreprocess(settings: BenchSettings, frames: readonly { data: Buffer }[]): Promise<PreprocessSection> {
  // The bundle the daemon runs by default decides the tensor shape.
  const bundle = await loadBundle(settings.int8Dir);
  const pre = new Preprocessor(bundle.manifest.input, settings.roi ?? undefined);
  const tensors = Array.from({ length: settings.inFlight }, () => pre.createTensor());
  let next = 0;
  const result = await saturate(settings.inFlight, settings.windowS, settings.warmupS, async (lane) => {
    const frame = frames[next++ % frames.length]!;
    await pre.toTensor(frame.data, tensors[lane]!);
    return 1;
  });
  const meta = await sharp(frames[0]!.data).metadata();
  const { input } = bundle.manifest;
  return {
    imagesPerSecond: round(result.items / result.seconds),
    latencyMs: roundDistribution(distribution(result.latenciesMs)),
    inFlight: settings.inFlight,
    threadpool: Number(process.env['UV_THREADPOOL_SIZE'] ?? 4),
    sharpConcurrency: sharp.concurrency(),
    frames: { count: frames.length, folder: settings.framesDir, size: `${meta.width}x${meta.height} ${meta.format} ${meta.channels}ch` },
    input: `${input.colour} ${input.width}x${input.height}`,
  };
}

