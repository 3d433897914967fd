import sharp from 'sharp';
import { rawStride } from '../capture/index.js';
import type { RawImage } from '../common/index.js';
import { loadBundle } from '../inference/index.js';
import { decodeThreadPixels, Preprocessor, type Roi } from '../preprocess/index.js';
import { cameraFrameRoi, cameraFrames } from './camera-frames.js';
import type { BenchSettings } from './settings.js';
import { distribution, round, roundDistribution, saturate, type Distribution } from './stats.js';

/** One frame set through one decoder. */
export interface IntakeRun {
  frames: string;
  /** 'sharp': every frame through sharp (the intake before the fast path); 'fast': what the daemon runs now. */
  decoder: 'sharp' | 'fast';
  imagesPerSecond: number;
  /** CPU time per image over all threads (sharp's on libuv's pool, the fast path's on the calling thread and the decode threads). */
  cpuMsPerImage: number;
  /** Decode threads the run started (large JPEGs only; 0: all decoded on the calling thread). */
  threads: number;
  latencyMs: Distribution;
}

export interface PreprocessSection {
  /** Decode + crop + resize + normalise of the sample frames as the daemon does it: the ceiling of frame intake. */
  imagesPerSecond: number;
  latencyMs: Distribution;
  /** Frames decoded at once: the daemon's in-flight count. */
  inFlight: number;
  /** libuv pool threads that run sharp's work (UV_THREADPOOL_SIZE, default 4). */
  threadpool: number;
  /** libvips threads per image (the preprocess module sets 1). */
  sharpConcurrency: number;
  /** preprocess.threads as the daemon resolves it: the fast path's decode threads for large JPEGs. */
  decodeThreads: number;
  /** JPEGs of at least this many pixels go to those threads. */
  decodeThreadPixels: number;
  frames: { count: number; folder: string; size: string };
  input: string;
  runs: IntakeRun[];
  /** fast / sharp images/s in this run: the sample frames, and 640x480 camera JPEGs with the item in an ROI. */
  speedup: { sampleFrames: number; cameraFrames: number };
}

/**
 * Preprocess alone, as the pipeline runs it: `inFlight` frames at a time, each into its own
 * tensor. The sample frames and camera-sized JPEGs made from them, through sharp and through the
 * fast path; and the raw frames a camera pipeline delivers at the model's size.
 */
export async function benchPreprocess(settings: BenchSettings, frames: readonly { name: string; data: Buffer }[]): Promise<PreprocessSection> {
  // The bundle the daemon runs by default decides the tensor shape.
  const bundle = await loadBundle(settings.int8Dir);
  const { input } = bundle.manifest;
  const meta = await sharp(frames[0]!.data).metadata();
  const sampleSize = `${meta.width}x${meta.height} ${meta.format}`;
  const camera = await cameraFrames(frames);
  const cameraRoi = `${cameraFrameRoi.width}x${cameraFrameRoi.height} ROI`;
  const run = async (label: string, data: readonly (Buffer | RawImage)[], roi: Roi | undefined, decoder: 'sharp' | 'fast'): Promise<IntakeRun> => {
    // The daemon's camera-frame preprocessor: small frames inline, large JPEGs on its decode threads.
    const pre = new Preprocessor(input, roi, undefined, { decoder, threads: settings.decodeThreads });
    const tensors = Array.from({ length: settings.inFlight }, () => pre.createTensor());
    // Decode threads start (and their JIT warms up) once per model runtime in the daemon, not per
    // run: one untimed pass over the frames before the window.
    await Promise.all(
      tensors.map(async (tensor, lane) => {
        for (let i = lane; i < data.length; i += tensors.length) await pre.toTensor(data[i]!, tensor);
      }),
    );
    let next = 0;
    const cpu = process.cpuUsage();
    const result = await saturate(settings.inFlight, settings.windowS, settings.warmupS, async (lane) => {
      await pre.toTensor(data[next++ % data.length]!, tensors[lane]!);
      return 1;
    });
    const used = process.cpuUsage(cpu);
    const threads = pre.liveThreads;
    await pre.close();
    return {
      frames: label,
      decoder,
      imagesPerSecond: round(result.items / result.seconds),
      cpuMsPerImage: round((used.user + used.system) / 1000 / next),
      threads,
      latencyMs: roundDistribution(distribution(result.latenciesMs)),
    };
  };
  const sampleLabel = `${frames.length} sample frames ${sampleSize}`;
  const cameraLabel = `${camera.length} camera frames 640x480 jpeg q85, ${cameraRoi}`;
  const runs = [
    await run(sampleLabel, frames.map((f) => f.data), settings.roi ?? undefined, 'sharp'),
    await run(sampleLabel, frames.map((f) => f.data), settings.roi ?? undefined, 'fast'),
    await run(cameraLabel, camera.map((f) => f.data), cameraFrameRoi, 'sharp'),
    await run(cameraLabel, camera.map((f) => f.data), cameraFrameRoi, 'fast'),
    await run(`raw ${input.colour} frames at the model size from a camera pipeline`, await rawFrames(frames, input), undefined, 'fast'),
  ];
  const [sampleSharp, sampleFast, cameraSharp, cameraFast] = runs as [IntakeRun, IntakeRun, IntakeRun, IntakeRun];
  return {
    imagesPerSecond: sampleFast.imagesPerSecond,
    latencyMs: sampleFast.latencyMs,
    inFlight: settings.inFlight,
    threadpool: Number(process.env['UV_THREADPOOL_SIZE'] ?? 4),
    sharpConcurrency: sharp.concurrency(),
    decodeThreads: settings.decodeThreads,
    decodeThreadPixels,
    frames: { count: frames.length, folder: settings.framesDir, size: `${sampleSize} ${meta.channels}ch` },
    input: `${input.colour} ${input.width}x${input.height}`,
    runs,
    speedup: { sampleFrames: round(sampleFast.imagesPerSecond / sampleSharp.imagesPerSecond), cameraFrames: round(cameraFast.imagesPerSecond / cameraSharp.imagesPerSecond) },
  };
}

/** The sample frames as a GStreamer pipeline with `videoscale ! videoconvert` hands them over: model-sized, rows padded to 4 bytes. */
async function rawFrames(frames: readonly { data: Buffer }[], input: { width: number; height: number; colour: 'gray' | 'rgb' }): Promise<RawImage[]> {
  const channels = input.colour === 'gray' ? 1 : 3;
  const stride = rawStride({ width: input.width, channels });
  return Promise.all(
    frames.map(async ({ data }) => {
      const packed = await sharp(data).resize(input.width, input.height, { fit: 'fill' }).toColourspace(channels === 1 ? 'b-w' : 'srgb').removeAlpha().raw().toBuffer();
      const pixels = new Uint8Array(stride * input.height);
      for (let y = 0; y < input.height; y++) pixels.set(packed.subarray(y * input.width * channels, (y + 1) * input.width * channels), y * stride);
      return { width: input.width, height: input.height, channels, stride, pixels, cropped: true } satisfies RawImage;
    }),
  );
}
