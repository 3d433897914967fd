import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UserError } from '../../dist/common/index.js';
import { openDatabase } from '../../dist/storage/index.js';
import { Accounts } from '../../dist/ui/index.js';
import { LoginLimiter, Sessions } from '../../dist/ui/sessions.js';
import { tempDir } from '../helpers/daemon.js';

describe('web UI accounts', () => {
  it('keeps a scrypt hash, never the password, and checks it', async () => {
    const db = openDatabase(join(tempDir(), 'linewatch.db'));
    const accounts = new Accounts(db);
    await accounts.add('ana', 'technician', 'correct horse');
    await accounts.add('ben', 'viewer', 'battery staple');
    expect(accounts.count()).toBe(2);
    const stored = db.prepare("SELECT password FROM ui_users WHERE name = 'ana'").pluck().get() as string;
    expect(stored).toMatch(/^scrypt\$32768\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}$/);
    expect(stored).not.toContain('correct horse');
    expect(await accounts.check('ana', 'correct horse')).toBe('technician');
    expect(await accounts.check('ben', 'battery staple')).toBe('viewer');
    expect(await accounts.check('ana', 'battery staple')).toBeUndefined();
    expect(await accounts.check('nobody', 'correct horse')).toBeUndefined();
    // The same password twice gives two hashes (a salt each).
    await accounts.add('cy', 'viewer', 'correct horse');
    expect(db.prepare("SELECT password FROM ui_users WHERE name = 'cy'").pluck().get()).not.toBe(stored);
    db.close();
  });

  it('refuses a taken name, a short password, an unknown role, with the fix', async () => {
    const accounts = new Accounts(openDatabase(join(tempDir(), 'linewatch.db')));
    await accounts.add('ana', 'technician', 'correct horse');
    const refusal = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as UserError);
    expect((await refusal(accounts.add('ana', 'viewer', 'another one')))?.message).toBe('the account "ana" exists already');
    expect((await refusal(accounts.add('bo', 'viewer', 'short')))?.hint).toBe('choose a longer one');
    expect(await refusal(accounts.add('bo', 'admin' as 'viewer', 'long enough'))).toBeInstanceOf(UserError);
    expect(await refusal(accounts.add('bad name', 'viewer', 'long enough'))).toBeInstanceOf(UserError);
  });
});

describe('web UI sessions and the login limit', () => {
  it('ends a session unused for longer than the idle time', () => {
    const sessions = new Sessions(1000);
    const s = sessions.create('ana', 'technician', 0);
    expect(s.csrf).not.toBe(s.id);
    expect(sessions.get(s.id, 900)).toBe(s);
    expect(sessions.get(s.id, 1800)).toBe(s);
    expect(sessions.get(s.id, 2801)).toBeUndefined();
    expect(sessions.get(undefined)).toBeUndefined();
  });

  it('allows a number of failures per key in any minute, then tells how long to wait', () => {
    const limiter = new LoginLimiter(3);
    const keys = ['address:10.0.0.7', 'name:ana'];
    for (const t of [0, 10_000, 20_000]) {
      expect(limiter.wait(keys, t)).toBe(0);
      limiter.failed(keys, t);
    }
    expect(limiter.wait(keys, 30_000)).toBe(30);
    // Another address trying the same account is held back too; an unrelated one is not.
    expect(limiter.wait(['address:10.0.0.8', 'name:ana'], 30_000)).toBe(30);
    expect(limiter.wait(['address:10.0.0.8', 'name:ben'], 30_000)).toBe(0);
    // A sliding window: the first failure leaves it after a minute.
    expect(limiter.wait(keys, 60_001)).toBe(0);
  });
});
