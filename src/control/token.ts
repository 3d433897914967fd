import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from '../common/index.js';

/**
 * The daemon's control token: read it, or make it on the first start.
 * Made as a 0600 temp file renamed into place, so no reader ever sees a partial or world-readable token.
 */
export function ensureToken(path: string): string {
  const existing = readTokenFile(path);
  if (existing !== undefined) return existing;
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('hex');
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(temp, token + '\n', { mode: 0o600, flag: 'wx' });
    renameSync(temp, path);
  } catch (err) {
    rmSync(temp, { force: true });
    throw new UserError(`cannot write the control token ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, 'set control.tokenFile to a path the service user can write, or fix the folder owner');
  }
  return token;
}

/** The token for the CLI, which never makes one: only the daemon does, as the service user. */
export function readToken(path: string): string {
  const token = readTokenFile(path);
  if (token === undefined) throw new UserError(`no control token at ${path}`, 'start linewatch once, or run as the service user / root');
  return token;
}

/** Constant-time, so a remote caller cannot learn the token byte by byte from response times. */
export function tokenMatches(expected: string, presented: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The trimmed token, or undefined when the file does not exist. */
function readTokenFile(path: string): string | undefined {
  let mode: number;
  let text: string;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'EACCES') throw new UserError(`no permission to read the control token ${path}`, 'run as the service user / root');
    throw new UserError(`cannot read the control token ${path} (${code ?? String(err)})`, 'set control.tokenFile to a file, or delete what is at that path');
  }
  // A token others can read is no secret, so it is refused rather than used.
  if ((mode & 0o077) !== 0) throw new UserError(`the control token ${path} can be read or changed by other users`, `chmod 600 ${path}`);
  const token = text.trim();
  if (token === '') throw new UserError(`the control token ${path} is empty`, `delete ${path}; linewatch makes a new one at its next start`);
  return token;
}
