import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/daemon.js';

// A resolve hook that refuses zod: importing it is about a tenth of a second of a fresh process's
// start, which the kNN path (open the references, classify) has no use for.
const refuseZod = `export async function resolve(specifier, context, next) {
  if (specifier === 'zod') throw new Error('zod imported by ' + context.parentURL);
  return next(specifier, context);
}`;

describe('the kNN path of a fresh process', () => {
  it('loads the store, the index and the database without zod', () => {
    const modules = ['common', 'storage', 'knn'].map((folder) => pathToFileURL(join(repoRoot, 'dist', folder, 'index.js')).href);
    const script = [
      `import { register } from 'node:module';`,
      `register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(refuseZod)}));`,
      ...modules.map((url) => `await import(${JSON.stringify(url)});`),
      `process.stdout.write('loaded');`,
    ].join('\n');
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out).toBe('loaded');
  });
});
