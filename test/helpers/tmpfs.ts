/**
 * A small real filesystem that fills up: a tmpfs of a given size, mounted on a temp folder.
 * Mounting needs root; `canMountTmpfs` says whether this run can (tests skip otherwise).
 *
 *   const disk = mountTmpfs(32 * MiB);   // disk.path; disk.free(); disk.unmount()
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const MiB = 1024 * 1024;

export const canMountTmpfs = process.getuid?.() === 0;

export interface SmallDisk {
  path: string;
  /** Bytes free for a user of the disk right now. */
  free(): number;
  unmount(): void;
}

export function mountTmpfs(bytes: number): SmallDisk {
  const path = mkdtempSync(join(tmpdir(), 'linewatch-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0755`, 'tmpfs', path]);
  return {
    path,
    free: () => {
      const s = statfsSync(path);
      return s.bavail * s.bsize;
    },
    unmount: () => {
      // Lazy: a child that still has a file open must not leave the mount behind.
      execFileSync('umount', ['-l', path]);
      rmSync(path, { recursive: true, force: true });
    },
  };
}
