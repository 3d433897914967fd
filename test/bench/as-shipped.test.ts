import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { unitEnvironment } from '../../dist/bench/as-shipped.js';

const unit = readFileSync(new URL('../../systemd/linewatch.service', import.meta.url), 'utf8');

describe("the bench's children run with the systemd unit's environment", () => {
  it("reads the unit's Environment= lines: the allocator it preloads", () => {
    const environment = unitEnvironment();
    expect(environment).toEqual(unitEnvironment(unit));
    expect(environment['LD_PRELOAD']).toBe('libjemalloc.so.2');
  });

  it("follows systemd's syntax: several words on a line, quoted words, an emptied variable", () => {
    const text = ['[Service]', 'Environment=A=1 B=two', 'Environment="C=x y" D=', '# Environment=E=commented', 'ExecStart=/usr/bin/env F=3'].join('\n');
    expect(unitEnvironment(text)).toEqual({ A: '1', B: 'two', C: 'x y', D: '' });
  });
});
