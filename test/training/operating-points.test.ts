import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { precisionRecallCurve } from '../../dist/knn/index.js';
import { repoRoot } from '../helpers/daemon.js';
import { python } from '../helpers/training.js';

interface Point {
  precision: number;
  recall: number;
  threshold: number;
}
interface Figures {
  points: { threshold: number[]; precision: number[]; recall: number[] };
  operatingPoints: { level: number; precisionAtRecall: Point | null; recallAtPrecision: Point | null };
  prCurve: { recall: number[]; precision: number[] };
}

/** training/eval.py's precision-recall figures of `scores` (anomaly = true in `anomalies`). */
function evalPy(scores: number[], anomalies: boolean[], level = 0.9): Figures {
  const run = spawnSync(python, ['-c', [
    'import json, sys',
    'import numpy as np',
    'from training import eval as knn',
    'case = json.loads(sys.argv[1])',
    "y, s = np.asarray(case['anomalies']), np.asarray(case['scores'])",
    't, p, r = knn.pr_points(y, s)',
    "print(json.dumps({'points': {'threshold': t.tolist(), 'precision': p.tolist(), 'recall': r.tolist()},",
    "                  'operatingPoints': knn.operating_points(y, s, case['level']), 'prCurve': knn.pr_curve(y, s)}))",
  ].join('\n'), JSON.stringify({ scores, anomalies, level })], { cwd: repoRoot, encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as Figures;
}

const A = true;
const G = false;

/**
 * The operating points the training report gives a technician (the best precision among thresholds
 * reaching a recall, the best recall among those reaching a precision, and the knn.threshold that
 * gives each), on cases worked out by hand.
 */
describe('training report: operating points and PR curve (training/eval.py)', () => {
  // Highest score first. Each distinct score t as the threshold (anomaly when score >= t):
  //   t       0.95 0.9  0.85 0.8  0.7  0.6  0.5  0.4137 0.3  0.2
  //   label   A    A    G    A    A    G    G    A      G    G
  //   prec.   1    1    .667 .75  .8   .667 .571 .625   .556 .5
  //   recall  .2   .4   .4   .6   .8   .8   .8   1      1    1
  const scores = [0.3, 0.95, 0.6, 0.2, 0.8, 0.4137, 0.9, 0.5, 0.85, 0.7];
  const labels = [G, A, G, G, A, A, A, G, G, A];

  it('picks the best precision at recall >= 0.9 and the best recall at precision >= 0.9, with a threshold that gives each', () => {
    const { operatingPoints } = evalPy(scores, labels);
    // Recall reaches 0.9 only at 1.0; the best precision there is 0.625, at t = 0.4137. Any
    // threshold in (0.3, 0.4137] makes the same decisions: the shortest decimal in the middle half
    // of that gap ([0.328, 0.385]), away from both scores, so float rounding cannot flip an item.
    expect(operatingPoints.precisionAtRecall).toEqual({ precision: 0.625, recall: 1, threshold: 0.36 });
    // Precision reaches 0.9 only at 1.0 (t = 0.95 and 0.9); the better recall is 0.4, at t = 0.9,
    // typed as 0.88 (0.9 itself is at the edge of (0.85, 0.9]).
    expect(operatingPoints.recallAtPrecision).toEqual({ precision: 1, recall: 0.4, threshold: 0.88 });
  });

  it('counts a recall or precision exactly at the level as reaching it', () => {
    // At 0.8: recall 0.8 is reached first at t = 0.7 with precision 0.8, which is also the best
    // recall among thresholds with precision >= 0.8. Any t in (0.6, 0.7] gives it; 0.6 is not in
    // it, so the threshold is the middle, 0.65.
    const { operatingPoints } = evalPy(scores, labels, 0.8);
    expect(operatingPoints.precisionAtRecall).toEqual({ precision: 0.8, recall: 0.8, threshold: 0.65 });
    expect(operatingPoints.recallAtPrecision).toEqual({ precision: 0.8, recall: 0.8, threshold: 0.65 });
  });

  it('says when no threshold reaches the precision, and flags everything at the lowest point', () => {
    // The highest score is a good item: precision is 0, then 0.5, 0.333, 0.5.
    const { operatingPoints } = evalPy([0.9, 0.8, 0.7, 0.6], [G, A, G, A]);
    expect(operatingPoints.recallAtPrecision).toBeNull();
    expect(operatingPoints.precisionAtRecall).toEqual({ precision: 0.5, recall: 1, threshold: 0 });
  });

  it('treats equal scores as one threshold', () => {
    const { points, operatingPoints } = evalPy([0.7, 0.7, 0.3, 0.7], [A, G, G, A]);
    expect(points).toEqual({ threshold: [0.7, 0.3], precision: [2 / 3, 0.5], recall: [1, 1] });
    expect(operatingPoints.precisionAtRecall).toEqual({ precision: 2 / 3, recall: 1, threshold: 0.5 });
  });

  it('gives the interpolated curve at every 0.01 of recall, its value at 0.9 being the operating point', () => {
    const { prCurve, operatingPoints } = evalPy(scores, labels);
    expect(prCurve.recall).toHaveLength(101);
    const at = (r: number): number => prCurve.precision[Math.round(r * 100)]!;
    expect([at(0), at(0.4), at(0.41), at(0.6), at(0.61), at(0.8), at(0.81), at(1)]).toEqual([1, 1, 0.8, 0.8, 0.8, 0.8, 0.625, 0.625]);
    expect(at(0.9)).toBe(operatingPoints.precisionAtRecall!.precision);
  });

  it('has the points of the curve the daemon draws (precisionRecallCurve, src/knn/metrics.ts)', () => {
    // Many ties (scores to two decimals), as the daemon's eval and web UI see them.
    const many = Array.from({ length: 300 }, (_, i) => ((i * 37) % 101) / 100);
    const anomalous = many.map((s, i) => (i % 7 === 0 ? s > 0.2 : s > 0.8));
    const { points } = evalPy(many, anomalous);
    const daemon = precisionRecallCurve(
      many.map((score, i) => ({ score, trueLabel: anomalous[i] ? 'scratch' : 'good', predictedLabel: 'good', anomaly: false })),
      'good',
    );
    expect(points.threshold).toEqual(daemon.map((p) => p.threshold));
    expect(points.precision.map((p) => p.toFixed(12))).toEqual(daemon.map((p) => p.precision.toFixed(12)));
    expect(points.recall.map((r) => r.toFixed(12))).toEqual(daemon.map((p) => p.recall.toFixed(12)));
  });
});
