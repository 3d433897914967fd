import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { BinaryMetrics } from '../../dist/knn/index.js';
import { repoRoot, runCommand, tempDir, writeConfig } from './daemon.js';

/** Debian's python, which has the training packages (python3-torch, ...). */
export const python = '/usr/bin/python3';

export interface PipelineRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * `python -m training.pipeline ARGS` (or another training module), run to its end (or killed after
 * timeoutMs). Asynchronous: a minute-long spawnSync would block the test worker's messages to
 * vitest, which then fails the run.
 */
export function runPipeline(args: string[], timeoutMs = 600_000, module = 'training.pipeline'): Promise<PipelineRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, ['-m', module, ...args], { cwd: repoRoot, timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
}

/** Fails with the pipeline's own last words (its log, then its errors) when it did not exit 0. */
export function expectFinished(run: PipelineRun, what: string): void {
  const lastWords = `${run.stdout.slice(-1500)}\n${run.stderr.slice(-3000)}`;
  expect(run.status, `${run.signal ? `${what} did not finish in time` : `${what} failed`}:\n${lastWords}`).toBe(0);
}

/**
 * Generated folders as a plant gives them (test/helpers/plant_folders.py): images per label of
 * `labeled` and `test`, in mixed sizes, gray and colour. Returns the folder holding unlabeled/,
 * labeled/ and test/.
 */
export function plantFolders(spec: { labeled?: Record<string, number>; test?: Record<string, number>; unlabeled?: Record<string, number> }): string {
  const dir = tempDir('linewatch-plant-');
  const made = spawnSync(python, [join(repoRoot, 'test/helpers/plant_folders.py'), dir, JSON.stringify(spec)], { encoding: 'utf8' });
  expect(made.status, `plant_folders.py failed: ${made.stderr}`).toBe(0);
  return dir;
}

/** The pipeline's --unlabeled, --labeled and --test for folders made by plantFolders. */
export function ownFolderArgs(dir: string): string[] {
  return ['--unlabeled', join(dir, 'unlabeled'), '--labeled', join(dir, 'labeled'), '--test', join(dir, 'test')];
}

export function readReport<T>(reportDir: string): T {
  return JSON.parse(readFileSync(join(reportDir, 'report.json'), 'utf8')) as T;
}

/**
 * The daemon's own figures for a bundle: `linewatch enroll references`, then `linewatch eval test`;
 * `knn` overrides the bundle's classifier settings (e.g. `{ threshold: 0.4 }`).
 */
export async function daemonEval(
  bundle: string,
  references: string,
  test: string,
  knn?: Record<string, number>,
): Promise<BinaryMetrics> {
  const dir = tempDir();
  const config = writeConfig(dir, { stateDir: join(dir, 'state'), model: bundle, ...(knn ? { knn } : {}) });
  const enrolled = await runCommand(['enroll', references, '--config', config, '--json']);
  expect(enrolled.code, enrolled.stderr).toBe(0);
  const evaluated = await runCommand(['eval', test, '--config', config, '--json']);
  expect(evaluated.code, evaluated.stderr).toBe(0);
  return (JSON.parse(evaluated.stdout) as { binary: BinaryMetrics }).binary;
}
