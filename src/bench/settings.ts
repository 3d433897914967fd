import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../common/index.js';
import { configSchema, decodeThreads, loadConfig, type Config } from '../config/index.js';

/** What the command line asks of the bench. */
export interface BenchOptions {
  /** A short run that only proves the bench works (CI); its figures are not worth quoting. */
  quick: boolean;
  /** Seconds of the measured end-to-end run (memory drift is taken over it too). */
  durationS: number | undefined;
  fp32: string | undefined;
  int8: string | undefined;
  frames: string | undefined;
  /** The line's labelled references (a folder per label) for the sample-line run; default: the sample line's with the default frames. */
  references: string | undefined;
  /** Config whose inference and preprocess settings are benched; default: the schema defaults. */
  configPath: string | undefined;
}

/** Everything a section needs, resolved once. */
export interface BenchSettings {
  quick: boolean;
  fp32Dir: string;
  int8Dir: string;
  framesDir: string;
  /** For the end-to-end run on the sample line; null (no such run) with other frames and no --references. */
  referencesDir: string | null;
  /** The daemon's inference settings (from --config, or the defaults a fresh install runs with). */
  inference: Config['inference'];
  roi: Config['preprocess']['roi'];
  /** The daemon's decode threads for large JPEG frames (preprocess.threads resolved). */
  decodeThreads: number;
  queueSize: number;
  /** Frames the daemon keeps in flight (see Daemon.start): every worker's batch plus two decoding. */
  inFlight: number;
  /** Seconds per measured window of the encoder and preprocess sections. */
  windowS: number;
  warmupS: number;
  e2e: { warmupS: number; durationS: number };
  /** Seconds of each phase of the swap run (without a change, then with two). */
  swap: { phaseS: number };
  knn: { sizes: number[]; queries: number };
}

/** The package root: dist/bench/ is two levels below it. */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export function resolveSettings(options: BenchOptions): BenchSettings {
  const config = options.configPath ? loadConfig({ path: options.configPath }).config : configSchema.parse({});
  const quick = options.quick;
  const durationS = options.durationS ?? (quick ? 3 : 60);
  if (!(durationS > 0)) throw new UserError(`--duration is ${options.durationS}: it must be a number of seconds > 0`, 'e.g. --duration 600 for the 10-minute memory run');
  return {
    quick,
    fp32Dir: bundleDir(options.fp32, 'default-fp32', '--fp32'),
    int8Dir: bundleDir(options.int8, 'default-int8', '--int8'),
    framesDir: resolve(options.frames ?? join(packageRoot, 'samples/line/frames')),
    referencesDir: referencesDir(options),
    inference: config.inference,
    roi: config.preprocess.roi,
    decodeThreads: decodeThreads(config),
    queueSize: config.capture.queueSize,
    inFlight: config.inference.maxBatch * config.inference.workers + 2,
    windowS: quick ? 0.4 : 3,
    warmupS: quick ? 0.1 : 0.5,
    e2e: { warmupS: quick ? 1 : 5, durationS },
    swap: { phaseS: Math.min(20, durationS) },
    // The sweep brackets the exact/HNSW crossover; 1k, 10k and 100k are the sizes the README quotes.
    knn: quick ? { sizes: [1000, 10_000], queries: 100 } : { sizes: [250, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000], queries: 1000 },
  };
}

function referencesDir(options: BenchOptions): string | null {
  if (!options.references) return options.frames ? null : join(packageRoot, 'samples/line/references');
  const dir = resolve(options.references);
  if (!existsSync(dir)) throw new UserError(`no references folder at ${dir}`, 'point --references at a folder with a subfolder of images per label (good, and each defect), like samples/line/references');
  return dir;
}

function bundleDir(given: string | undefined, name: string, option: string): string {
  const dir = resolve(given ?? join(packageRoot, 'models', name));
  if (!existsSync(join(dir, 'manifest.json'))) {
    throw new UserError(
      `no model bundle at ${dir} (manifest.json is missing)`,
      given ? `point ${option} at a bundle folder holding manifest.json and the .onnx file` : `train the default models (training/README.md), or pass ${option} DIR`,
    );
  }
  return dir;
}

/** The sample frames, read into memory once (at most `limit`, in name order). */
export async function loadFrames(dir: string, limit = 2000): Promise<{ name: string; data: Buffer }[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => /\.(jpe?g|png)$/i.test(n)).sort();
  } catch (err) {
    throw new UserError(`cannot read the frames folder ${dir} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, 'pass --frames DIR with JPEG/PNG frames (the sample line is samples/line/frames)');
  }
  if (names.length === 0) throw new UserError(`no .jpg/.png frames in ${dir}`, 'pass --frames DIR with JPEG/PNG frames (the sample line is samples/line/frames)');
  return Promise.all(names.slice(0, limit).map(async (name) => ({ name, data: await readFile(join(dir, name)) })));
}
