import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { restrictUmask, UserError } from '../../dist/common/index.js';
import { openDatabase, withoutFsync } from '../../dist/storage/index.js';
import { tempDir } from '../helpers/daemon.js';

const modeOf = (path: string) => (statSync(path).mode & 0o777).toString(8);

describe('openDatabase file modes', () => {
  // The umask a shell usually gives: on its own it would make the database world-readable (0644).
  let saved: number;
  beforeEach(() => {
    saved = process.umask(0o022);
  });
  afterEach(() => {
    process.umask(saved);
  });

  it('makes new state folders 0750 and the database with its -wal and -shm 0640', () => {
    const state = join(tempDir(), 'state', 'nested');
    const db = openDatabase(join(state, 'linewatch.db'));
    db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
    expect([modeOf(join(state, '..')), modeOf(state)]).toEqual(['750', '750']);
    expect(['', '-wal', '-shm'].map((suffix) => modeOf(join(state, `linewatch.db${suffix}`)))).toEqual(['640', '640', '640']);
    db.close();
  });

  it('tightens a database made world-readable before, and keeps a stricter one as it is', () => {
    const dir = tempDir();
    const open = join(dir, 'open.db');
    openDatabase(open).close();
    chmodSync(open, 0o666);
    openDatabase(open).close();
    expect(modeOf(open)).toBe('640');
    const strict = join(dir, 'strict.db');
    openDatabase(strict).close();
    chmodSync(strict, 0o600);
    openDatabase(strict).close();
    expect(modeOf(strict)).toBe('600');
  });

  it('restricts the umask of a daemon to 027 at least, and keeps a stricter one', () => {
    restrictUmask();
    expect(process.umask(0o077)).toBe(0o027);
    restrictUmask();
    expect(process.umask()).toBe(0o077);
  });

  it('says a file is in the way of stateDir instead of failing with EEXIST', () => {
    const file = join(tempDir(), 'state');
    writeFileSync(file, 'not a folder');
    for (const path of [join(file, 'linewatch.db'), join(file, 'deeper', 'linewatch.db')]) {
      let err: unknown;
      try {
        openDatabase(path);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UserError);
      expect((err as UserError).message).toBe(`cannot make the folder ${join(path, '..')}: a file is in the way`);
      expect((err as UserError).hint).toBe('point stateDir at a folder, or move that file away');
    }
    mkdirSync(join(file + '-ok'));
    expect(() => openDatabase(join(file + '-ok', 'linewatch.db')).close()).not.toThrow();
  });
});

describe('withoutFsync', () => {
  it('commits with synchronous=NORMAL and gives the connection back at FULL, also when the write throws', () => {
    const db = openDatabase(join(tempDir('linewatch-without-fsync-'), 'linewatch.db'));
    try {
      const level = () => db.pragma('synchronous', { simple: true });
      expect(level()).toBe(2);
      db.exec('CREATE TABLE t (x INTEGER)');
      const seen = withoutFsync(db, () => {
        db.prepare('INSERT INTO t VALUES (1)').run();
        return level();
      });
      expect(seen).toBe(1);
      expect(level()).toBe(2);
      expect(() => withoutFsync(db, () => db.prepare('INSERT INTO missing VALUES (1)').run())).toThrow(/no such table/);
      expect(level()).toBe(2);
      expect(db.prepare('SELECT COUNT(*) FROM t').pluck().get()).toBe(1);
    } finally {
      db.close();
    }
  });
});
