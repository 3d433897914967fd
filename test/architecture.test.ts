import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/daemon.js';

const src = join(repoRoot, 'src');

/** The folders in the order docs/architecture.md lists them: each may import only folders above it. */
function documentedOrder(): string[] {
  const doc = readFileSync(join(repoRoot, 'docs/architecture.md'), 'utf8');
  return [...doc.matchAll(/^\| `([a-z]+)\/` \|/gm)].map((m) => m[1]!);
}

/** Every relative import of every source file, resolved to the file it names. */
function imports(): Map<string, string[]> {
  const files: string[] = [];
  (function walk(dir: string) {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (path.endsWith('.ts')) files.push(path);
    }
  })(src);
  return new Map(files.map((file) => [file, [...readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)].map((m) => resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')))]));
}

const folderOf = (file: string) => relative(src, file).split('/')[0]!;

describe('the shape of src/ (docs/architecture.md)', () => {
  it('documents every folder, and folders import only folders above them', () => {
    const order = documentedOrder();
    const folders = readdirSync(src).filter((name) => statSync(join(src, name)).isDirectory());
    expect(folders.filter((f) => !order.includes(f))).toEqual([]);
    const upward = [];
    for (const [file, deps] of imports()) {
      for (const dep of deps) {
        const [from, to] = [folderOf(file), folderOf(dep)];
        if (from !== to && order.indexOf(to) >= order.indexOf(from)) upward.push(`${relative(src, file)} imports ${relative(src, dep)}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('has no import cycle, types included', () => {
    const graph = imports();
    const state = new Map<string, 'open' | 'done'>();
    const cycles: string[] = [];
    const visit = (file: string, path: string[]) => {
      state.set(file, 'open');
      for (const dep of graph.get(file) ?? []) {
        if (state.get(dep) === 'open') cycles.push([...path.slice(path.indexOf(dep)), dep].map((f) => relative(src, f)).join(' -> '));
        else if (!state.has(dep)) visit(dep, [...path, dep]);
      }
      state.set(file, 'done');
    };
    for (const file of graph.keys()) if (!state.has(file)) visit(file, [file]);
    expect(cycles).toEqual([]);
  });
});
