import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { UserError } from './errors.js';

/*
 * The state folder holds images of the product and the whole reference set: nobody but the
 * service user (and its group, for backups and the CLI) may read it, whatever umask started us.
 */
export const STATE_DIR_MODE = 0o750;
export const STATE_FILE_MODE = 0o640;
/** The umask bits that keep every file the process makes within the modes above. */
const STATE_UMASK = 0o027;

/** Adds STATE_UMASK to the process umask (a stricter one stays), so files made by libraries (SQLite, tar) are covered too. */
export function restrictUmask(): void {
  process.umask(process.umask(STATE_UMASK) | STATE_UMASK);
}

/**
 * Makes a folder of state (and its missing parents) at most 0750. Something in the way, or no
 * permission, is the user's to fix: a UserError naming the folder and the config key.
 */
export function makeStateDir(path: string, key: string): void {
  try {
    mkdirSync(path, { recursive: true, mode: STATE_DIR_MODE });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') {
      throw new UserError(`cannot make the folder ${path}: a file is in the way`, `point ${key} at a folder, or move that file away`, { cause: err });
    }
    throw new UserError(`cannot make the folder ${path} (${code ?? (err as Error).message})`, `check ${key} and that the service user may write its parent folder`, { cause: err });
  }
}

/** The permission bits of an existing path when it allows more than `mode`; undefined when it does not (or is not there). */
export function modeBeyond(path: string, mode: number): number | undefined {
  let current: number;
  try {
    current = statSync(path).mode & 0o777;
  } catch {
    return undefined;
  }
  return (current & ~mode) === 0 ? undefined : current;
}

/**
 * Takes away any permission beyond `mode` from an existing file of ours (made before umask was
 * watched, or copied in). A stricter mode stays.
 */
export function tightenMode(path: string, mode: number): void {
  const current = modeBeyond(path, mode);
  if (current === undefined) return;
  try {
    chmodSync(path, current & mode);
  } catch (err) {
    // Owned by another user (root ran the CLI on it, say): theirs to change, and it still opens.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
  }
}
