/**
 * The one way linewatch reads a file it is pointed at: real FIFOs, devices, symlinks to them,
 * folders and oversized files are refused with a message, without blocking a thread or reading
 * more than the limit.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isMissingFile, readRegularFile, readRegularFileSync, UserError } from '../../dist/common/index.js';
import { tempDir } from '../helpers/daemon.js';

const limits = { what: 'frame', maxBytes: 1000, hint: 'give a regular file' };

function hostileFiles(): Record<string, string> {
  const dir = tempDir('linewatch-files-');
  const fifo = join(dir, 'fifo.jpg');
  execFileSync('mkfifo', [fifo]);
  symlinkSync('/dev/zero', join(dir, 'zero.jpg'));
  symlinkSync(fifo, join(dir, 'to-fifo.jpg'));
  mkdirSync(join(dir, 'folder.jpg'));
  writeFileSync(join(dir, 'big.jpg'), Buffer.alloc(1001));
  return {
    fifo,
    device: '/dev/zero',
    'symlink to /dev/zero': join(dir, 'zero.jpg'),
    'symlink to a FIFO': join(dir, 'to-fifo.jpg'),
    folder: join(dir, 'folder.jpg'),
    'file over the limit': join(dir, 'big.jpg'),
  };
}

const expected: Record<string, RegExp> = {
  fifo: /^the frame .*fifo\.jpg is a FIFO \(named pipe\), not a regular file: it is not read$/,
  device: /^the frame \/dev\/zero is a character device, not a regular file/,
  'symlink to /dev/zero': /^the frame .*zero\.jpg is a character device, not a regular file/,
  'symlink to a FIFO': /^the frame .*to-fifo\.jpg is a FIFO/,
  folder: /^the frame .*folder\.jpg is a folder, not a regular file/,
  'file over the limit': /^the frame .*big\.jpg is 1001 bytes, more than the 1000 bytes allowed$/,
};

describe('reading a file the daemon is pointed at', () => {
  const files = hostileFiles();
  for (const [kind, path] of Object.entries(files)) {
    it(`refuses a ${kind} with a UserError naming it, at once (async and sync)`, async () => {
      const async = await readRegularFile(path, limits).catch((err: unknown) => err);
      expect(async).toBeInstanceOf(UserError);
      expect((async as UserError).message).toMatch(expected[kind]!);
      expect((async as UserError).hint).toBe('give a regular file');
      let sync: unknown;
      try {
        readRegularFileSync(path, limits);
      } catch (err) {
        sync = err;
      }
      expect((sync as UserError).message).toBe((async as UserError).message);
    });
  }

  it('reads a regular file, and one exactly at the limit', async () => {
    const dir = tempDir('linewatch-files-');
    writeFileSync(join(dir, 'a.jpg'), 'hello');
    writeFileSync(join(dir, 'b.jpg'), Buffer.alloc(1000, 7));
    symlinkSync(join(dir, 'a.jpg'), join(dir, 'link.jpg'));
    expect((await readRegularFile(join(dir, 'a.jpg'), limits)).toString()).toBe('hello');
    expect((await readRegularFile(join(dir, 'link.jpg'), limits)).toString()).toBe('hello');
    expect(await readRegularFile(join(dir, 'b.jpg'), limits)).toEqual(Buffer.alloc(1000, 7));
    expect(readRegularFileSync(join(dir, 'b.jpg'), limits)).toEqual(Buffer.alloc(1000, 7));
  });

  it('says when a file is missing, so a caller can fall back', async () => {
    const err = await readRegularFile('/nonexistent/x.jpg', limits).catch((e: unknown) => e);
    expect((err as UserError).message).toBe('cannot read the frame /nonexistent/x.jpg: it does not exist');
    expect(isMissingFile(err)).toBe(true);
    expect(isMissingFile(await readRegularFile(files.fifo!, limits).catch((e: unknown) => e))).toBe(false);
  });

  it('stops at the limit when a file grows while it is read', async () => {
    // /proc files report size 0 and then deliver bytes: the read is bounded by the limit, not by fstat.
    const err = await readRegularFile('/proc/self/maps', { ...limits, maxBytes: 10 }).catch((e: unknown) => e);
    expect((err as UserError).message).toMatch(/is over 10 bytes \(it grew while read\)/);
    expect((await readRegularFile('/proc/self/maps', { ...limits, maxBytes: 1_000_000 })).toString()).toMatch(/\[stack\]/);
  });
});
