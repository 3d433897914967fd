import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/daemon.js';
import { python } from '../helpers/training.js';

/**
 * bench/python_pipeline.py, the Python side of bench/compare-python.sh (README, "Performance"): it
 * builds the bundles' architecture from training/model.py, so a change there must not break it
 * unseen. Run on 70 sample frames (more than one batch of 64) in both precisions.
 */
describe('the plain Python pipeline of the bench comparison', () => {
  const work = mkdtempSync(join(tmpdir(), 'lw-python-pipeline-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  const frames = join(repoRoot, 'samples/line/frames');
  for (const name of readdirSync(frames).sort().slice(0, 70)) symlinkSync(join(frames, name), join(work, name));

  it.each([['fp32', []], ['int8', ['--int8']]])('classifies every frame against the references in %s', (precision, flags) => {
    const run = spawnSync(python, ['-m', 'bench.python_pipeline', work, join(repoRoot, 'samples/line/references'), ...flags, '--threads', '1'], {
      cwd: repoRoot,
      encoding: 'utf8',
    });
    expect(run.status, run.stderr).toBe(0);
    const figures = JSON.parse(run.stdout) as { pipeline: string; images: number; imagesPerSecond: number; cpuMsPerImage: number };
    expect(figures).toMatchObject({ pipeline: `python ${precision}`, images: 70 });
    expect(figures.imagesPerSecond).toBeGreaterThan(0);
    expect(figures.cpuMsPerImage).toBeGreaterThan(0);
  }, 120_000);
});
