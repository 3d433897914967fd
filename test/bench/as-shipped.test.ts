import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hnswlibLoader, unitEnvironment } from '../../dist/bench/as-shipped.js';

const unit = readFileSync(new URL('../../systemd/linewatch.service', import.meta.url), 'utf8');

describe("the bench's children run with the systemd unit's environment", () => {
  it("reads the unit's Environment= lines: the allocator it preloads", () => {
    const environment = unitEnvironment();
    expect(environment).toEqual(unitEnvironment(unit));
    expect(environment['LD_PRELOAD']).toBe('libjemalloc.so.2');
  });

  it("gives Node the unit's JS heap limit: a NODE_OPTIONS that Node takes, far above the daemon's live heap", () => {
    // A flag Node refuses in NODE_OPTIONS would stop the service from starting at all.
    const run = spawnSync(process.execPath, ['-p', "require('node:v8').getHeapStatistics().heap_size_limit"], {
      env: { ...process.env, ...unitEnvironment(), LD_PRELOAD: '' },
      encoding: 'utf8',
    });
    expect(run.stderr).toBe('');
    const limitMb = Number(run.stdout) / 2 ** 20;
    expect(limitMb).toBeGreaterThanOrEqual(512);
    expect(limitMb).toBeLessThan(1024);
  });

  it("follows systemd's syntax: several words on a line, quoted words, an emptied variable", () => {
    const text = ['[Service]', 'Environment=A=1 B=two', 'Environment="C=x y" D=', '# Environment=E=commented', 'ExecStart=/usr/bin/env F=3'].join('\n');
    expect(unitEnvironment(text)).toEqual({ A: '1', B: 'two', C: 'x y', D: '' });
  });
});

describe("hnswlib-node's index loader, as npm's postinstall leaves it", () => {
  it('is the rebuild without per-point seeks (deploy/hnswlib-loader.mjs), and running the script again changes nothing', async () => {
    // npm ci ran the postinstall: when its edit no longer applies (another hnswlib-node) or its
    // build fails, start-up with a large reference set is slower, and this says so.
    expect(await hnswlibLoader()).toMatch(/^without per-point seeks/);
    const again = spawnSync(process.execPath, [fileURLToPath(new URL('../../deploy/hnswlib-loader.mjs', import.meta.url))], { encoding: 'utf8' });
    expect(again.status).toBe(0);
    expect(again.stdout).toMatch(/without per-point seeks: already installed\./);
  });
});
