import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { createFrameSource, type Frame, type FrameSource } from '../../dist/capture/index.js';
import { captureLogs, isJpeg, tempDir, waitFor } from './helpers.js';

captureLogs();

const quick = { restartInitialMs: 50, restartMaxMs: 400, stopGraceMs: 300 };
const originalPath = process.env['PATH']!;

/**
 * Stands in for rpicam-vid (absent here): records how it was called, then streams MJPEG to
 * stdout from gst-launch, so the real spawn/split path runs.
 */
function streamingShim(argvFile: string): string {
  return `#!/bin/sh
{ echo "$0"; printf '%s\\n' "$@"; } > '${argvFile}'
exec gst-launch-1.0 -q videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=15/1 ! jpegenc ! fdsink fd=1
`;
}

async function install(dir: string, name: string, script: string): Promise<void> {
  await writeFile(join(dir, name), script);
  await chmod(join(dir, name), 0o755);
}

describe('libcamera source', () => {
  let bin: Awaited<ReturnType<typeof tempDir>>;
  let source: FrameSource | undefined;

  beforeAll(async () => {
    bin = await tempDir('libcamera-bin');
  });
  const pathDirs: Awaited<ReturnType<typeof tempDir>>[] = [];
  afterEach(async () => {
    process.env['PATH'] = originalPath;
    await source?.stop();
    source = undefined;
    for (const dir of pathDirs.splice(0)) await dir.remove();
  });
  afterAll(() => bin.remove());

  async function withShims(shims: Record<string, string>): Promise<string> {
    const dir = await tempDir('libcamera-path');
    pathDirs.push(dir);
    for (const [name, script] of Object.entries(shims)) await install(dir.path, name, script);
    process.env['PATH'] = `${dir.path}:${originalPath}`;
    return dir.path;
  }

  it('runs rpicam-vid once with the MJPEG streaming arguments and splits its stdout', async () => {
    const argvFile = join(bin.path, 'rpicam-argv.txt');
    await withShims({ 'rpicam-vid': streamingShim(argvFile) });
    source = createFrameSource({ kind: 'libcamera', width: 640, height: 480, fps: 20, ...quick });
    const frames: Frame[] = [];
    await source.start((frame) => void frames.push(frame));
    await waitFor(() => frames.length >= 3, 10_000, '3 frames');

    const [program, ...args] = (await readFile(argvFile, 'utf8')).trim().split('\n');
    expect(program).toMatch(/\/rpicam-vid$/);
    expect(args).toEqual(['-t', '0', '-n', '--camera', '0', '--codec', 'mjpeg', '--quality', '85', '--width', '640', '--height', '480', '--framerate', '20', '-o', '-']);
    expect(frames.every((frame) => isJpeg(frame.data))).toBe(true);
    expect(await sharp(frames[1]!.data).metadata()).toMatchObject({ format: 'jpeg', width: 64, height: 48 });
    expect(frames[0]!.origin).toBe('libcamera');
    expect(source.status()).toMatchObject({ kind: 'libcamera', state: 'running', restarts: 0 });
  });

  it('falls back to libcamera-vid when rpicam-vid is not installed', async () => {
    const argvFile = join(bin.path, 'libcamera-argv.txt');
    await withShims({ 'libcamera-vid': streamingShim(argvFile) });
    source = createFrameSource({ kind: 'libcamera', extraArgs: ['--rotation', '180'], ...quick });
    let frames = 0;
    await source.start(() => void frames++);
    await waitFor(() => frames >= 2, 10_000, '2 frames');
    const [program, ...args] = (await readFile(argvFile, 'utf8')).trim().split('\n');
    expect(program).toMatch(/\/libcamera-vid$/);
    expect(args.slice(-4)).toEqual(['--rotation', '180', '-o', '-']);
  });

  it('says how to install the camera apps when neither program exists, and keeps retrying', async () => {
    const empty = await withShims({});
    process.env['PATH'] = empty;
    source = createFrameSource({ kind: 'libcamera', ...quick });
    await source.start(() => {});
    await waitFor(() => source!.status().restarts >= 1, 5_000, 'a retry');
    expect(source.status().lastError).toMatch(/rpicam-vid not found on PATH.*apt-get install rpicam-apps/);
  });

  it('stop() SIGKILLs a process that ignores SIGTERM and resolves once it is gone', async () => {
    await withShims({ 'rpicam-vid': "#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.05; done\n" });
    source = createFrameSource({ kind: 'libcamera', ...quick });
    await source.start(() => {});
    await new Promise((resolve) => setTimeout(resolve, 200)); // let the shell install its trap
    const started = Date.now();
    await source.stop();
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(250); // waited out the grace period
    expect(took).toBeLessThan(3_000);
    expect(source.status().state).toBe('stopped');
  });
});
