import { spawnSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/daemon.js';
import { python } from '../helpers/training.js';

interface Choice {
  model: string;
  why: string;
  margin: number;
}
interface Case {
  candidates: Record<string, number>;
  anomalies: number;
}

/** training/pipeline.py's choose_bundle on each case's candidates {model: out-of-fold F1}, in one Python start (torch takes seconds to import). */
function chooseAll(cases: Case[]): Choice[] {
  const run = spawnSync(python, ['-c', [
    'import json, sys',
    'from training import pipeline',
    'out = []',
    'for case in json.loads(sys.argv[1]):',
    "    candidates = {m: (None, {}, f1) for m, f1 in case['candidates'].items()}",
    "    model, why, margin = pipeline.choose_bundle(candidates, 200, case['anomalies'])",
    "    out.append({'model': model, 'why': why, 'margin': margin})",
    'print(json.dumps(out))',
  ].join('\n'), JSON.stringify(cases)], { cwd: repoRoot, encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as Choice[];
}

const cases: Case[] = [
  { candidates: { 'autoencoder+kNN': 0.875, 'fine-tuned+kNN': 0.857 }, anomalies: 20 },
  { candidates: { 'autoencoder+kNN': 0.851, 'fine-tuned+kNN': 0.8 }, anomalies: 20 },
  { candidates: { 'autoencoder+kNN': 0.875, 'fine-tuned+kNN': 0.857 }, anomalies: 200 },
  { candidates: { 'autoencoder+kNN': 0.75, 'fine-tuned+kNN': 0.5 }, anomalies: 4 },
  { candidates: { 'autoencoder+kNN': 0.9, 'fine-tuned+kNN': 0.95 }, anomalies: 20 },
  { candidates: { 'autoencoder+kNN': 0.8, 'fine-tuned+kNN': 0.6, 'other+kNN': 0.9 }, anomalies: 10 },
  { candidates: { 'autoencoder+kNN': 0, 'fine-tuned+kNN': 0 }, anomalies: 0 },
];
let choices: Choice[] = [];
beforeAll(() => {
  choices = chooseAll(cases);
}, 60_000);
const choose = (i: number) => choices[i]!;

/**
 * The exported bundle: fine-tuned+kNN (the method's model) unless another candidate's out-of-fold F1
 * on the labels is higher by more than one labeled anomaly's worth (1 / anomalies). The training run
 * of 30 November 2026 (kNN on the bottleneck vector) had autoencoder+kNN ahead by 0.018 out of fold
 * with 20 anomalies, and 0.055 behind on the test split.
 */
describe('the bundle choice', () => {
  it('keeps fine-tuned+kNN when another leads by less than one anomaly\'s worth of F1', () => {
    const choice = choose(0);
    expect(choice.model).toBe('fine-tuned+kNN');
    expect(choice.margin).toBe(0.05);
    expect(choice.why).toContain('autoencoder+kNN 0.875, fine-tuned+kNN 0.857');
    expect(choice.why).toContain('better by more than 0.050 (1 / the 20 anomalies');
  });

  it('takes another model when it leads by more than that', () => {
    expect(choose(1).model).toBe('autoencoder+kNN');
    // With more anomalies among the labels, the same lead is no longer noise.
    expect(choose(2).model).toBe('autoencoder+kNN');
  });

  it('keeps fine-tuned+kNN at a lead of exactly the margin, and when it is the best', () => {
    expect(choose(3).model).toBe('fine-tuned+kNN');
    expect(choose(4).model).toBe('fine-tuned+kNN');
  });

  it('picks the best of several others that clear the margin, and survives a folder without anomalies', () => {
    expect(choose(5).model).toBe('other+kNN');
    expect(choose(6).model).toBe('fine-tuned+kNN');
  });
});
