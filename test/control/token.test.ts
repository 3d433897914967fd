import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UserError } from '../../dist/common/index.js';
import { ensureToken, readToken, tokenMatches } from '../../dist/control/index.js';

describe('control token', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'linewatch-token-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is made on first use as 32 random bytes in hex, mode 0600, in a folder made for it, and reused after', () => {
    const path = join(dir, 'state', 'control-token');
    const token = ensureToken(path);
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(dir, 'state'))).toEqual(['control-token']); // no temp file left behind
    expect(ensureToken(path)).toBe(token);
    expect(readToken(path)).toBe(token);
    expect(ensureToken(join(dir, 'other-token'))).not.toBe(token);
  });

  it('is read trimmed from a file written by hand', () => {
    const path = join(dir, 'control-token');
    writeFileSync(path, '  s3cret\n', { mode: 0o600 });
    expect(ensureToken(path)).toBe('s3cret');
  });

  it('refuses a file other users can read, naming the chmod that fixes it', () => {
    const path = join(dir, 'control-token');
    writeFileSync(path, 'a'.repeat(64));
    chmodSync(path, 0o644);
    for (const read of [ensureToken, readToken]) {
      let caught: unknown;
      try {
        read(path);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(UserError);
      expect((caught as UserError).hint).toBe(`chmod 600 ${path}`);
    }
    chmodSync(path, 0o600);
    expect(ensureToken(path)).toBe('a'.repeat(64));
  });

  it('refuses an empty file', () => {
    const path = join(dir, 'control-token');
    writeFileSync(path, '\n', { mode: 0o600 });
    expect(() => ensureToken(path)).toThrow(/is empty/);
  });

  it('is never made by the CLI: a missing token says how to get one', () => {
    const path = join(dir, 'control-token');
    let caught: unknown;
    try {
      readToken(path);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UserError);
    expect((caught as UserError).hint).toBe('start linewatch once, or run as the service user / root');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('matches only the same token', () => {
    expect(tokenMatches('abc123', 'abc123')).toBe(true);
    expect(tokenMatches('abc123', 'abc124')).toBe(false);
    expect(tokenMatches('abc123', 'abc1234')).toBe(false);
    expect(tokenMatches('abc123', '')).toBe(false);
  });
});
