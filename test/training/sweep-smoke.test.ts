import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, tempDir } from '../helpers/daemon.js';
import { expectFinished, runPipeline } from '../helpers/training.js';

interface Row {
  model: string;
  labels: number;
  f1: number;
  auroc: number;
  operatingPoints: { precisionAtRecall: { precision: number } | null; recallAtPrecision: { recall: number } | null };
  prCurve: { recall: number[]; precision: number[] };
}
interface Sweep {
  smoke: boolean;
  products: { product: string; defects: string[]; results: Row[] }[];
  mean: Row[];
}

/** Every file under the repository's folders that the sweep must leave alone, with its size and time. */
function shippedFiles(): Record<string, string> {
  const files: Record<string, string> = {};
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else files[path] = `${statSync(path).size} ${statSync(path).mtimeMs}`;
    }
  };
  for (const dir of ['models', 'samples', 'training/data', 'training/report']) walk(join(repoRoot, dir));
  return files;
}

/**
 * The product sweep in miniature: two products, each a smoke run of the pipeline without bundles.
 * Catches a sweep that no longer runs, means that are not the products' means, and runs that
 * write into the shipped models/, samples/ or training/report/.
 */
describe('product sweep (smoke)', () => {
  it('runs each product, writes their figures and their mean, resumes, and leaves the shipped files alone', async () => {
    const out = tempDir('linewatch-sweep-');
    const before = shippedFiles();
    const args = ['--smoke', '--products', 'trouser,bag', '--out', out];
    expectFinished(await runPipeline(args, 600_000, 'training.sweep'), 'training.sweep --smoke');

    const sweep = JSON.parse(readFileSync(join(out, 'sweep.json'), 'utf8')) as Sweep;
    expect(sweep.smoke).toBe(true);
    expect(sweep.products.map((p) => [p.product, p.defects])).toEqual([
      ['trouser', ['dress', 't-shirt', 'shirt']],
      ['bag', ['shirt', 'pullover', 'coat']],
    ]);
    const [trouser, bag] = sweep.products;
    expect(sweep.mean.map((r) => `${r.model} ${r.labels}`)).toEqual(trouser!.results.map((r) => `${r.model} ${r.labels}`));
    expect(sweep.mean.map((r) => r.model)).toContain('supervised');
    sweep.mean.forEach((row, i) => {
      const [a, b] = [trouser!.results[i]!, bag!.results[i]!];
      expect(row.f1, `${row.model} ${row.labels} mean F1`).toBeCloseTo((a.f1 + b.f1) / 2, 10);
      expect(row.auroc, `${row.model} ${row.labels} mean AUROC`).toBeCloseTo((a.auroc + b.auroc) / 2, 10);
      expect(row.operatingPoints.precisionAtRecall!.precision).toBeCloseTo(
        (a.operatingPoints.precisionAtRecall!.precision + b.operatingPoints.precisionAtRecall!.precision) / 2, 10);
      const recall = (r: Row): number => r.operatingPoints.recallAtPrecision?.recall ?? 0;
      expect(row.operatingPoints.recallAtPrecision!.recall).toBeCloseTo((recall(a) + recall(b)) / 2, 10);
      expect(row.prCurve.precision[50]).toBeCloseTo((a.prCurve.precision[50]! + b.prCurve.precision[50]!) / 2, 4);
    });
    // Seeded smoke runs (fine-tuned AUROC 0.83-0.90 here); chance is 0.5.
    for (const row of sweep.mean.filter((r) => r.model === 'fine-tuned+kNN')) {
      expect(row.auroc, `fine-tuned+kNN ${row.labels} mean AUROC is near chance`).toBeGreaterThan(0.65);
    }

    const md = readFileSync(join(out, 'sweep.md'), 'utf8');
    expect(md).toContain('## Mean over the 2 product(s)');
    expect(md).toMatch(/\| trouser \| dress, t-shirt, shirt \| [0-9.]+ \|/);
    expect(md).toContain('### Mean precision-recall curves');
    for (const file of ['sweep.png', 'products/trouser.md', 'products/bag.md']) expect(statSync(join(out, file)).size).toBeGreaterThan(100);

    // Run again with the same options: both products are kept, not retrained.
    const again = await runPipeline(args, 600_000, 'training.sweep');
    expectFinished(again, 'training.sweep --smoke, again');
    expect(again.stdout).toMatch(/trouser: kept from/);
    expect(again.stdout).toMatch(/bag: kept from/);
    expect(again.stdout).not.toContain('epoch');
    expect((JSON.parse(readFileSync(join(out, 'sweep.json'), 'utf8')) as Sweep).mean).toEqual(sweep.mean);

    expect(shippedFiles(), 'the sweep wrote into models/, samples/ or training/').toEqual(before);
  }, 900_000);
});
