import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { driftKinds, drifted } from '../../dist/bench/drift.js';
import { mulberry32 } from '../../dist/bench/knn.js';
import { repoRoot } from '../helpers/daemon.js';

const folder = join(repoRoot, 'samples/line/test/good');
const image = join(folder, readdirSync(folder).sort()[0]!);

async function pixels(png: Buffer | string): Promise<Float64Array> {
  return Float64Array.from(await sharp(png).greyscale().raw().toBuffer());
}

/** Mean absolute difference between horizontally adjacent pixels (28 wide): what a blur lowers. */
function edges(p: Float64Array): number {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < p.length; i++) {
    if (i % 28 === 27) continue;
    sum += Math.abs(p[i + 1]! - p[i]!);
    n++;
  }
  return sum / n;
}

function meanAbsDiff(a: Float64Array, b: Float64Array): number {
  return a.reduce((s, x, i) => s + Math.abs(x - b[i]!), 0) / a.length;
}

/** The experiment's kinds of drift (src/bench/drift.ts) on a real sample-line image. */
describe('drift kinds', () => {
  it('leaves the image as it is at strength 0, whatever the kind', async () => {
    const original = await pixels(image);
    for (const drift of Object.values(driftKinds)) {
      expect(meanAbsDiff(await pixels(await drifted(image, drift, 0, mulberry32(1))), original), drift.kind).toBe(0);
    }
  });

  it('lighting: full drift is contrast * p + brightness', async () => {
    const original = await pixels(image);
    const lit = await pixels(await drifted(image, driftKinds.lighting, 1, mulberry32(1)));
    const { contrast, brightness } = driftKinds.lighting as { contrast: number; brightness: number };
    original.forEach((p, i) => expect(Math.abs(lit[i]! - Math.min(255, contrast * p + brightness))).toBeLessThanOrEqual(1));
  });

  it('focus: blurs more as the drift grows, and keeps the brightness', async () => {
    const original = await pixels(image);
    const half = await pixels(await drifted(image, driftKinds.focus, 0.5, mulberry32(1)));
    const full = await pixels(await drifted(image, driftKinds.focus, 1, mulberry32(1)));
    expect(edges(half)).toBeLessThan(edges(original));
    expect(edges(full)).toBeLessThan(edges(half));
    const mean = (p: Float64Array) => p.reduce((s, x) => s + x, 0) / p.length;
    expect(Math.abs(mean(full) - mean(original))).toBeLessThan(2);
  });

  it('noise: the same seed gives the same frame, and its size follows the strength', async () => {
    const original = await pixels(image);
    const full = await pixels(await drifted(image, driftKinds.noise, 1, mulberry32(5)));
    expect(await pixels(await drifted(image, driftKinds.noise, 1, mulberry32(5)))).toEqual(full);
    expect(await pixels(await drifted(image, driftKinds.noise, 1, mulberry32(6)))).not.toEqual(full);
    const quarter = meanAbsDiff(await pixels(await drifted(image, driftKinds.noise, 0.25, mulberry32(5))), original);
    // Gaussian noise of sigma s moves a pixel by s * sqrt(2 / pi) on average (less where it clips at 0 or 255).
    const sigma = (driftKinds.noise as { sigma: number }).sigma;
    expect(meanAbsDiff(full, original)).toBeGreaterThan(0.4 * sigma * Math.sqrt(2 / Math.PI));
    expect(meanAbsDiff(full, original)).toBeLessThan(1.05 * sigma * Math.sqrt(2 / Math.PI));
    expect(quarter).toBeLessThan(meanAbsDiff(full, original) / 2);
  });
});
