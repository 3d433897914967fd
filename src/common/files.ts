import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { UserError } from './errors.js';

/** What a file is for, in the user's words, and how big it may be. */
export interface FileLimits {
  /** Names the file in messages: "frame", "model file", "configuration file"... */
  what: string;
  maxBytes: number;
  /** What the user should do when the file is refused. */
  hint: string;
}

/**
 * O_NONBLOCK: opening a FIFO without a writer returns at once instead of blocking a thread of
 * libuv's pool forever (which also makes process.exit hang, as libuv joins its threads at exit).
 * Regular files ignore the flag.
 */
const openFlags = constants.O_RDONLY | constants.O_NONBLOCK;

/**
 * Opens a file to read only after checking, on the opened descriptor (so the file checked is the
 * file read), that it is a regular file of at most `maxBytes`. A FIFO, a device (/dev/zero), a
 * symlink to one, a folder or an oversized file is refused with a UserError naming it.
 */
export async function openRegularFile(path: string, limits: FileLimits): Promise<{ handle: FileHandle; size: number }> {
  let handle: FileHandle;
  try {
    handle = await open(path, openFlags);
  } catch (err) {
    throw cannotOpen(path, limits, err);
  }
  try {
    return { handle, size: checkStats(path, await handle.stat(), limits) };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** The whole file, refused as openRegularFile says; it reads at most maxBytes + 1 bytes, even from a file that grows. */
export async function readRegularFile(path: string, limits: FileLimits): Promise<Buffer> {
  const { handle, size } = await openRegularFile(path, limits);
  try {
    const reader = new BoundedRead(path, size, limits);
    for (;;) {
      const { buffer, offset, length } = reader.space();
      const { bytesRead } = await handle.read(buffer, offset, length, null);
      if (reader.took(bytesRead)) return reader.result();
    }
  } finally {
    await handle.close();
  }
}

/** readRegularFile for the few callers that must stay synchronous (the configuration file). */
export function readRegularFileSync(path: string, limits: FileLimits): Buffer {
  let fd: number;
  try {
    fd = openSync(path, openFlags);
  } catch (err) {
    throw cannotOpen(path, limits, err);
  }
  try {
    const reader = new BoundedRead(path, checkStats(path, fstatSync(fd), limits), limits);
    for (;;) {
      const { buffer, offset, length } = reader.space();
      if (reader.took(readSync(fd, buffer, offset, length, null))) return reader.result();
    }
  } finally {
    closeSync(fd);
  }
}

/** The file was not there (the refusal's cause is ENOENT): some callers have a default for that. */
export function isMissingFile(err: unknown): boolean {
  return (err as { cause?: NodeJS.ErrnoException } | null)?.cause?.code === 'ENOENT';
}

function cannotOpen(path: string, limits: FileLimits, err: unknown): UserError {
  const code = (err as NodeJS.ErrnoException).code;
  const reason = code === 'ENOENT' ? 'it does not exist' : code === 'EACCES' ? 'permission denied' : (code ?? (err as Error).message);
  return new UserError(`cannot read the ${limits.what} ${path}: ${reason}`, limits.hint, { cause: err });
}

/** The file's size, once it is known to be a regular file within the limit. */
function checkStats(path: string, stats: Stats, limits: FileLimits): number {
  if (!stats.isFile()) throw new UserError(`the ${limits.what} ${path} is ${kindOf(stats)}, not a regular file: it is not read`, limits.hint);
  if (stats.size > limits.maxBytes) throw tooLarge(path, limits, `${stats.size} bytes`);
  return stats.size;
}

function tooLarge(path: string, limits: FileLimits, size: string): UserError {
  return new UserError(`the ${limits.what} ${path} is ${size}, more than the ${limits.maxBytes} bytes allowed`, limits.hint);
}

function kindOf(stats: Stats): string {
  if (stats.isDirectory()) return 'a folder';
  if (stats.isFIFO()) return 'a FIFO (named pipe)';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** The buffer a bounded read fills: sized from fstat, grown only while within the limit. */
class BoundedRead {
  private buffer: Buffer;
  private filled = 0;

  constructor(
    private readonly path: string,
    size: number,
    private readonly limits: FileLimits,
  ) {
    // One byte more than expected, so a file that grew since fstat is noticed.
    this.buffer = Buffer.allocUnsafe(Math.min(size, limits.maxBytes) + 1);
  }

  space(): { buffer: Buffer; offset: number; length: number } {
    return { buffer: this.buffer, offset: this.filled, length: this.buffer.length - this.filled };
  }

  /** Records a read; true at the end of the file. */
  took(bytes: number): boolean {
    this.filled += bytes;
    if (bytes === 0) return true;
    if (this.filled < this.buffer.length) return false;
    if (this.filled > this.limits.maxBytes) throw tooLarge(this.path, this.limits, `over ${this.limits.maxBytes} bytes (it grew while read)`);
    const grown = Buffer.allocUnsafe(Math.min(this.buffer.length * 2, this.limits.maxBytes + 1));
    this.buffer.copy(grown, 0, 0, this.filled);
    this.buffer = grown;
    return false;
  }

  result(): Buffer {
    return this.buffer.subarray(0, this.filled);
  }
}
