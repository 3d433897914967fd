import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const fixtureDir = new URL('../fixtures/tiny-model/', import.meta.url).pathname;

/** A copy of the tiny fixture bundle whose manifest has been changed by `edit`. */
export async function editedBundle(edit: (manifest: Record<string, any>) => void): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'linewatch-bundle-'));
  await cp(fixtureDir, dir, { recursive: true });
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  edit(manifest);
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
  return dir;
}

/** Deterministic pseudo-random frames (mulberry32), values in [-1, 1] like normalised pixels. */
export function frames(count: number, length: number, seed = 1): Float32Array[] {
  let state = seed;
  const random = (): number => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: count }, () => Float32Array.from({ length }, () => random() * 2 - 1));
}
