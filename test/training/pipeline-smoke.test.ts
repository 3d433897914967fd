import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/daemon.js';
import { daemonEval, expectFinished, readReport, runPipeline } from '../helpers/training.js';

interface OperatingPoint {
  precision: number;
  recall: number;
  threshold: number;
}

/**
 * The whole training pipeline in miniature (one epoch on a few hundred images), then the daemon's
 * own path on what it wrote: the bundles load, and `linewatch eval` reproduces the report's parity
 * figures, well above chance. Catches a pipeline that no longer runs, bundles the daemon cannot read, or a model that learned nothing.
 */
describe('training pipeline (smoke)', () => {
  it('trains, exports FP32 and INT8 bundles the daemon loads, and the daemon reproduces its parity figures', async () => {
    const out = tempDir('linewatch-train-');
    expectFinished(await runPipeline(['--smoke', '--out', out]), 'training.pipeline --smoke');

    const report = readReport<{
      smoke: boolean;
      data: { testLabels: { missingFromTest: string[]; newInTest: string[] } };
      parity: Record<string, { f1: number; auroc: number; tp: number; fn: number; operatingPoints: { precisionAtRecall: OperatingPoint } }>;
      results: { model: string; operatingPoints?: { precisionAtRecall: OperatingPoint | null; recallAtPrecision: OperatingPoint | null } }[];
    }>(join(out, 'report'));
    expect(report.smoke).toBe(true);
    const md = readFileSync(join(out, 'report', 'report.md'), 'utf8');
    for (const name of ['report.md', 'report.png']) expect(readFileSync(join(out, 'report', name)).length).toBeGreaterThan(100);
    // The smoke run's test split has no bags, as a plant's test folder often lacks a defect kind:
    // the report names it instead of failing after all the training.
    expect(report.data.testLabels).toEqual({ missingFromTest: ['bag'], newInTest: [] });
    expect(md).toContain('labels with no test images (no recall figure): bag');
    // Every row, supervised included, has its operating points; the full run writes the same sections.
    for (const row of report.results) expect(row.operatingPoints?.precisionAtRecall, `${row.model} has no operating point`).toBeTruthy();
    expect(md).toContain('## Operating points');
    expect(md).toContain('## Precision-recall curves');

    const sample = join(out, 'sample', 'samples', 'line');
    for (const bundle of ['default-fp32', 'default-int8']) {
      const figures = await daemonEval(join(out, bundle), join(sample, 'references'), join(sample, 'test'));
      expect(Math.abs(figures.f1 - report.parity[bundle]!.f1)).toBeLessThanOrEqual(0.01);
      expect(Math.abs(figures.auroc - report.parity[bundle]!.auroc)).toBeLessThanOrEqual(0.01);
      // Parity alone would pass a model that learned nothing. The smoke run is seeded (AUROC 0.85
      // FP32, 0.81 INT8 on its 1,000 test images); chance is 0.5, within about 0.03 at this size.
      expect(figures.auroc, `${bundle} AUROC is near chance: the model learned nothing`).toBeGreaterThanOrEqual(0.65);
      expect(figures.f1, `${bundle} finds no anomaly`).toBeGreaterThan(0.3);
    }

    // The threshold the report gives for recall >= 0.9, set as knn.threshold, makes the daemon
    // flag the items of that operating point on the same files (one item more or less moves this
    // smoke run's low precision by less than 0.001, so the counts are compared). Within one item:
    // after one epoch the encoder's features lie within 0.001 of each other in cosine distance, so
    // float32 rounding in the daemon moves scores by about 1e-5, and the smoke run's distinct scores
    // near the threshold are 1e-4 apart (a full run's features are 0.07 apart, its scores 1e-3).
    const parity = report.parity['default-fp32']!;
    const point = parity.operatingPoints.precisionAtRecall;
    const found = Math.round(point.recall * (parity.tp + parity.fn));
    const atPoint = await daemonEval(join(out, 'default-fp32'), join(sample, 'references'), join(sample, 'test'), { threshold: point.threshold });
    expect(Math.abs(atPoint.truePositives - found), `anomalies found at knn.threshold ${point.threshold}: ${atPoint.truePositives} against ${found}`).toBeLessThanOrEqual(1);
    const flagged = atPoint.truePositives + atPoint.falsePositives;
    expect(Math.abs(flagged - Math.round(found / point.precision)), `items flagged at knn.threshold ${point.threshold}: ${flagged} against ${Math.round(found / point.precision)}`).toBeLessThanOrEqual(1);
  }, 900_000);
});
