import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { UserError } from '../common/index.js';
import type { FrameSource } from './frame.js';
import { SupervisedProcessSource, definedOnly, type SupervisionOptions } from './supervisor.js';

// Not built on the npm package node-libcamera: it starts one shell process per capture, resolves
// only when that exits, cannot stream, and its option check is always true (values reach the shell
// unquoted). One rpicam-vid process streaming MJPEG to a pipe is what a conveyor needs.

export interface LibcameraOptions extends SupervisionOptions {
  kind: 'libcamera';
  name?: string;
  /** Camera index (`--camera`), for boards with two cameras. */
  camera?: number;
  width?: number;
  height?: number;
  fps?: number;
  /** MJPEG quality (`--quality`, 1-100). */
  quality?: number;
  /** Further rpicam-vid options, one argv entry each, e.g. ['--rotation', '180']. */
  extraArgs?: string[];
}

export const libcameraDefaults = {
  name: 'libcamera',
  camera: 0,
  width: 1280,
  height: 720,
  fps: 15,
  quality: 85,
  extraArgs: [] as string[],
};

/** rpicam-vid is the current name; Raspberry Pi OS before Bookworm ships it as libcamera-vid. */
const programs = ['rpicam-vid', 'libcamera-vid'];

const installHint = 'install the Raspberry Pi camera apps, e.g. `sudo apt-get install rpicam-apps` (older systems: libcamera-apps)';

export function createLibcameraSource(options: LibcameraOptions): FrameSource {
  const s = { ...libcameraDefaults, ...definedOnly(options) };
  for (const key of ['width', 'height', 'fps'] as const) {
    if (!Number.isInteger(s[key]) || s[key] <= 0) throw new UserError(`libcamera ${key} must be a positive integer, got ${s[key]}`);
  }
  if (!Number.isInteger(s.camera) || s.camera < 0) throw new UserError(`libcamera camera must be an integer >= 0, got ${s.camera}`);
  if (!Number.isInteger(s.quality) || s.quality < 1 || s.quality > 100) throw new UserError(`libcamera quality must be an integer 1-100, got ${s.quality}`);
  const args = [
    '-t', '0', '-n',
    '--camera', String(s.camera),
    '--codec', 'mjpeg',
    '--quality', String(s.quality),
    '--width', String(s.width),
    '--height', String(s.height),
    '--framerate', String(s.fps),
    ...s.extraArgs,
    '-o', '-',
  ];
  return new SupervisedProcessSource({
    name: s.name,
    kind: 'libcamera',
    // Looked up at each start, so installing the apps while the daemon retries is enough.
    command: async () => ({ file: (await findOnPath(programs)) ?? programs[0]!, args }),
    installHint,
    supervision: options,
  });
}

async function findOnPath(names: string[]): Promise<string | undefined> {
  const dirs = (process.env['PATH'] ?? '').split(delimiter).filter(Boolean);
  for (const name of names) {
    for (const dir of dirs) {
      try {
        await access(join(dir, name), constants.X_OK);
        return name;
      } catch {
        // not in this directory
      }
    }
  }
  return undefined;
}
