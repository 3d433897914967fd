import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import type { BenchDocument } from './document.js';
import { benchE2e } from './e2e.js';
import { benchEncoder, tensorSource } from './encoder.js';
import { benchKnn } from './knn.js';
import { benchPreprocess } from './preprocess.js';
import { targets } from './targets.js';
import { loadFrames, packageRoot, resolveSettings, type BenchOptions } from './settings.js';

export type { BenchDocument, Target } from './document.js';
export { renderText } from './render.js';
export type { BenchOptions } from './settings.js';
export { defaultDriftRuns, driftKinds, runDriftExperiment, type Drift, type DriftOptions, type DriftReport, type DriftRunResult, type DriftRunSpec } from './drift.js';
export { packageRoot } from './settings.js';

/** Runs every section in turn (one at a time, so they do not compete for the cores). */
export async function runBench(options: BenchOptions, command: string, progress: (line: string) => void): Promise<BenchDocument> {
  const settings = resolveSettings(options);
  const startedAt = new Date();
  const loadBefore = loadavg()[0]!;
  const frames = await loadFrames(settings.framesDir);
  progress(`encoder: ${settings.fp32Dir} and ${settings.int8Dir}`);
  const encoder = await benchEncoder(settings, tensorSource(frames, settings));
  progress(`preprocess: ${frames.length} frames from ${settings.framesDir}`);
  const preprocess = await benchPreprocess(settings, frames);
  progress(`e2e: the daemon at full rate for ${settings.e2e.durationS} s against a private mosquitto, then a model push and two swaps (${settings.swap.phaseS} s per phase)`);
  const { e2e, memory, swap } = await benchE2e(settings);
  progress(`knn: ${settings.knn.sizes.join(', ')} references`);
  const knn = await benchKnn(settings);
  const document: Omit<BenchDocument, 'targets'> = {
    command,
    quick: settings.quick,
    machine: {
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: availableParallelism(),
      loadBefore: Math.round(loadBefore * 100) / 100,
      loadAfter: Math.round(loadavg()[0]! * 100) / 100,
      node: process.version,
      onnxruntime: packageVersion('onnxruntime-node'),
      sharp: packageVersion('sharp'),
      hnswlib: packageVersion('hnswlib-node'),
    },
    startedAt: startedAt.toISOString(),
    durationS: Math.round((Date.now() - startedAt.getTime()) / 1000),
    encoder,
    preprocess,
    e2e,
    knn,
    memory,
    swap,
  };
  return { ...document, targets: targets(document) };
}

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(packageRoot, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}
