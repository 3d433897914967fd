import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { errorText, makeStateDir, type Logger } from '../common/index.js';

/**
 * TensorRT engine caches for an onnxruntime-node built with the TensorRT provider
 * (deploy/jetson/build-onnxruntime-tensorrt.sh). The stock binding creates that provider with
 * only a device id; the patched one reads provider options from this variable ("key=value;...",
 * ONNX Runtime's TensorRT option names), which the daemon sets before its inference workers start.
 */
export const TRT_OPTIONS_VARIABLE = 'ORT_NODE_TENSORRT_OPTIONS';

const libraryDirs = ['/usr/lib/aarch64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/usr/local/cuda/lib64', '/usr/lib'];

export interface TensorRtCache {
  dir: string;
  /** No engine is cached yet: the first session builds one, which takes minutes on a Jetson. */
  building: boolean;
}

/**
 * The cache folder of one engine: per model (its sha256 and version), TensorRT version and GPU,
 * so a change of any of them builds a new engine instead of loading a stale one.
 */
export function tensorRtCacheDir(stateDir: string, model: { version: string; sha256: string }, tensorrtVersion: string, gpu: string): string {
  const safe = (s: string) => s.replace(/[^A-Za-z0-9_.-]+/g, '_');
  return join(stateDir, 'tensorrt', `${safe(model.version)}-${model.sha256.slice(0, 16)}-trt${safe(tensorrtVersion)}-${safe(gpu)}`);
}

/**
 * When TensorRT can be used (asked for, its library present, and an onnxruntime-node build with
 * the provider), points the provider at this model's cache folder (inference workers started
 * after this read it) and removes caches of models not kept. Null otherwise; an operator's own
 * variable is left alone.
 */
export async function prepareTensorRt(
  options: { providers: readonly string[]; stateDir: string; keep: readonly { version: string; sha256: string }[] },
  manifest: { version: string; sha256: string; precision: string },
  log: Logger,
): Promise<TensorRtCache | null> {
  if (!options.providers.includes('tensorrt') || (process.env[TRT_OPTIONS_VARIABLE] !== undefined && !process.env[TRT_OPTIONS_VARIABLE]!.includes(join(options.stateDir, 'tensorrt')))) return null;
  const version = tensorRtVersion();
  if (!version) return null;
  try {
    // Loaded only on machines with TensorRT: the daemon's own thread has no other use for the binding.
    const ort = await import('onnxruntime-node');
    if (!ort.listSupportedBackends().some((b) => b.name === 'tensorrt')) return null;
    const gpu = gpuName();
    const dir = tensorRtCacheDir(options.stateDir, manifest, version, gpu);
    makeStateDir(dir, 'stateDir');
    // Engines of the models kept for rollback stay; those of removed models, old TensorRT versions or GPUs go.
    const kept = new Set([dir, ...options.keep.map((m) => tensorRtCacheDir(options.stateDir, m, version, gpu))]);
    const root = join(options.stateDir, 'tensorrt');
    for (const other of readdirSync(root)) if (!kept.has(join(root, other))) rmSync(join(root, other), { recursive: true, force: true });
    const building = !readdirSync(dir).some((f) => f.endsWith('.engine'));
    process.env[TRT_OPTIONS_VARIABLE] = [
      'trt_engine_cache_enable=1',
      `trt_engine_cache_path=${dir}`,
      'trt_timing_cache_enable=1',
      `trt_timing_cache_path=${dir}`,
      'trt_fp16_enable=1',
      // A QDQ INT8 model carries its own scales: no calibration table.
      `trt_int8_enable=${manifest.precision === 'int8' ? 1 : 0}`,
    ].join(';');
    if (building) log.warn('building the TensorRT engine for this model: the first start takes minutes, later ones load it from the cache', { cache: dir });
    return { dir, building };
  } catch (err) {
    log.warn('TensorRT engine cache not set up; TensorRT builds its engine at every start', { error: errorText(err) });
    return null;
  }
}

/** The TensorRT library's version from its file name (libnvinfer.so.10.3.0), or null without TensorRT. */
function tensorRtVersion(): string | null {
  for (const dir of libraryDirs) {
    if (!existsSync(dir)) continue;
    const lib = readdirSync(dir).find((f) => /^libnvinfer\.so\.\d+\.\d+/.test(f));
    if (lib) return lib.replace('libnvinfer.so.', '');
  }
  return null;
}

function gpuName(): string {
  for (const file of ['/proc/device-tree/model', '/proc/driver/nvidia/gpus']) {
    try {
      if (file.endsWith('model')) return readFileSync(file, 'utf8').replace(/\0/g, '').trim();
      const [first] = readdirSync(file);
      if (first) return readFileSync(join(file, first, 'information'), 'utf8').match(/Model:\s*(.+)/)?.[1]?.trim() ?? first;
    } catch {
      // Not this kind of machine: try the next source.
    }
  }
  return 'gpu';
}
