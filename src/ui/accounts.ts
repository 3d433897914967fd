import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { UserError } from '../common/index.js';
import { migrate, type Db } from '../storage/index.js';

/** A viewer sees every page; a technician may also change things (label, remove, tune, models). */
export type Role = 'viewer' | 'technician';
export const roles: readonly Role[] = ['viewer', 'technician'];

// Step i brings the ui schema to version i+1; never edit a released step, append a new one.
const steps = [
  `CREATE TABLE ui_users (
     name TEXT PRIMARY KEY,
     role TEXT NOT NULL CHECK (role IN ('viewer', 'technician')),
     password TEXT NOT NULL, -- scrypt$N$r$p$salt$hash, hex
     created_at INTEGER NOT NULL
   )`,
];

// OWASP's scrypt minimum (N=2^17, r=8, p=1) takes ~0.3 s on a Pi 4: 2^15 keeps a login near 80 ms there.
const cost = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const keyLength = 32;
const minPasswordLength = 8;

function derive(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, keyLength, options, (err, key) => (err ? reject(err) : resolve(key))));
}

async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, cost);
  return ['scrypt', cost.N, cost.r, cost.p, salt.toString('hex'), key.toString('hex')].join('$');
}

async function passwordMatches(stored: string, password: string): Promise<boolean> {
  const [kind, N, r, p, salt, hash] = stored.split('$');
  if (kind !== 'scrypt' || !salt || !hash) return false;
  const key = await derive(password, Buffer.from(salt, 'hex'), { N: Number(N), r: Number(r), p: Number(p), maxmem: cost.maxmem });
  const expected = Buffer.from(hash, 'hex');
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** Stands in for an unknown name, so a login takes as long whether or not the account exists. */
const decoy = hashPassword(randomBytes(16).toString('hex'));

/** Web UI accounts in the state database: a name, a role and a scrypt hash of the password. */
export class Accounts {
  constructor(private readonly db: Db) {
    migrate(db, 'ui', steps);
  }

  async add(name: string, role: Role, password: string): Promise<void> {
    if (!/^[A-Za-z0-9_.@-]{1,64}$/.test(name)) throw new UserError(`"${name}" cannot be an account name`, 'use 1 to 64 letters, digits, dot, dash, underscore or @');
    if (!roles.includes(role)) throw new UserError(`unknown role "${role}"`, `give --role ${roles.join(' or ')}`);
    if (password.length < minPasswordLength) throw new UserError(`the password is shorter than ${minPasswordLength} characters`, 'choose a longer one');
    const hash = await hashPassword(password);
    const added = this.db.prepare('INSERT INTO ui_users (name, role, password, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING').run(name, role, hash, Date.now());
    if (added.changes === 0) throw new UserError(`the account "${name}" exists already`, 'pick another name');
  }

  count(): number {
    return this.db.prepare('SELECT count(*) FROM ui_users').pluck().get() as number;
  }

  /** The account's role when the password is right, else undefined. */
  async check(name: string, password: string): Promise<Role | undefined> {
    const row = this.db.prepare('SELECT role, password FROM ui_users WHERE name = ?').get(name) as { role: Role; password: string } | undefined;
    const matches = await passwordMatches(row?.password ?? (await decoy), password);
    return row && matches ? row.role : undefined;
  }
}
