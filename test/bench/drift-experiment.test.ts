import { describe, expect, it } from 'vitest';
import { runCommand } from '../helpers/daemon.js';

interface Run {
  name: string;
  f1: number[];
  final: { f1: number };
  admitted: number;
  wrongAdmissions: number;
}
interface Report {
  seed: number;
  frames: number;
  windowFrames: number;
  runs: Run[];
}

/**
 * `linewatch experiment drift` (docs/learning.md) on the shipped bundle and sample line: the
 * properties the docs rest on, not its F1 figures (those belong to the bundle, in the README).
 */
describe('linewatch experiment drift', () => {
  it('runs with another shuffle, and the admission policy admits nothing wrong where the docs say so while the loosened policy does', { timeout: 180_000 }, async () => {
    const result = await runCommand(['experiment', 'drift', '--seed', '11', '--json']);
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as Report;
    expect(report.seed).toBe(11);
    const run = (name: string) => {
      const found = report.runs.find((r) => r.name === name);
      expect(found, name).toBeDefined();
      return found!;
    };
    const off = run('learning off');
    expect(off.f1).toHaveLength(report.frames / report.windowFrames);
    expect(off.admitted).toBe(0);
    // Learning on admits references, all of the right label, and ends no worse than off.
    const on = run('learning on');
    expect(on.admitted).toBeGreaterThan(0);
    expect(on.wrongAdmissions).toBe(0);
    expect(on.final.f1).toBeGreaterThanOrEqual(off.final.f1);
    // Poisoned by 4 mislabeled references and a burst: the human-neighbour rule holds the policy.
    expect(run('poisoned, on').wrongAdmissions).toBe(0);
    expect(run('poisoned, loose policy, caps').wrongAdmissions).toBeGreaterThan(0);
    // A whole label mislabeled: the caps bound what the loosened policy admits.
    expect(run('label mislabeled, loose policy, caps').admitted).toBeLessThan(run('label mislabeled, loose policy, no caps').admitted);
  });

  it('refuses a seed that is not a whole number, with the usage', async () => {
    const result = await runCommand(['experiment', 'drift', '--seed', 'x']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('--seed must be a whole number, not "x"');
    expect(result.stderr).toContain('linewatch experiment drift [--drift lighting|focus|noise] [--chart FILE] [--json] [--fp32 DIR] [--seed N]');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('refuses a kind of drift it does not know, naming the ones it does', async () => {
    const result = await runCommand(['experiment', 'drift', '--drift', 'smoke']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('--drift smoke: the line can drift in lighting, focus, noise');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
