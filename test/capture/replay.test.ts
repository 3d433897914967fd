import { execFileSync } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameQueue, createFrameSource, type Frame } from '../../dist/capture/index.js';
import { UserError } from '../../dist/common/index.js';
import { captureLogs, noiseJpeg, tempDir } from './helpers.js';

const logs = captureLogs();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('replay source', () => {
  let folder: Awaited<ReturnType<typeof tempDir>>;
  const names = ['f10.jpg', 'f2.JPG', 'f1.png', 'f3.jpeg'];

  beforeAll(async () => {
    folder = await tempDir('replay');
    for (const [i, name] of names.entries()) await writeFile(join(folder.path, name), await noiseJpeg(8, 8, i));
    await writeFile(join(folder.path, 'notes.txt'), 'not an image');
  });
  afterAll(() => folder.remove());

  it('plays once in name order (numbers compared as numbers), then ends', async () => {
    const source = createFrameSource({ kind: 'replay', folder: folder.path, fps: 0, loop: false });
    const frames: Frame[] = [];
    await source.start((frame) => void frames.push(frame));
    await source.ended();
    expect(frames.map((f) => f.origin)).toEqual(['f1.png', 'f2.JPG', 'f3.jpeg', 'f10.jpg']);
    expect(frames.map((f) => f.seq)).toEqual([1, 2, 3, 4]);
    expect(source.status()).toMatchObject({ kind: 'replay', state: 'ended', framesReceived: 4, framesDropped: 0 });
  });

  it('loops by default and paces frames at the configured fps', async () => {
    const source = createFrameSource({ kind: 'replay', folder: folder.path, fps: 20 });
    const frames: Frame[] = [];
    await source.start((frame) => void frames.push(frame));
    await sleep(1000);
    await source.stop();
    const count = frames.length;
    // 20 fps for 1 s: about 21 frames; loose bounds because the machine is shared.
    expect(count).toBeGreaterThanOrEqual(8);
    expect(count).toBeLessThanOrEqual(24);
    expect(frames.slice(0, 6).map((f) => f.origin)).toEqual(['f1.png', 'f2.JPG', 'f3.jpeg', 'f10.jpg', 'f1.png', 'f2.JPG']);
    await sleep(150);
    expect(frames.length).toBe(count); // nothing after stop()
    expect(source.status().state).toBe('stopped');
  });

  it('at fps 0 runs at the pace of a slower consumer, losslessly and without queueing up', async () => {
    const source = createFrameSource({ kind: 'replay', folder: folder.path, fps: 0 });
    const queue = new FrameQueue(2);
    let maxSize = 0;
    await source.start(async (frame) => {
      await queue.pushWhenRoom(frame);
      maxSize = Math.max(maxSize, queue.size);
    });
    const taken: number[] = [];
    while (taken.length < 20) {
      for (const frame of await queue.take(1)) taken.push(frame.seq);
      await sleep(10); // the slow pipeline
    }
    await source.stop();
    queue.close();
    expect(taken).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(maxSize).toBeLessThanOrEqual(2);
    expect(queue.dropped).toBe(0);
    expect(source.status().framesReceived).toBeLessThanOrEqual(20 + 3);
  });

  it('rejects a missing folder with a UserError and a hint', async () => {
    const source = createFrameSource({ kind: 'replay', folder: join(folder.path, 'nope') });
    const error = await source.start(() => {}).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(UserError);
    expect((error as UserError).message).toMatch(/cannot read the replay folder .*nope/);
    expect((error as UserError).hint).toMatch(/path/);
    expect(source.status()).toMatchObject({ state: 'failed' });
  });

  it('rejects a folder without images', async () => {
    const empty = await tempDir('replay-empty');
    await writeFile(join(empty.path, 'readme.md'), '# nothing');
    try {
      const source = createFrameSource({ kind: 'replay', folder: empty.path });
      await expect(source.start(() => {})).rejects.toThrow(/holds no \.jpg, \.jpeg or \.png files/);
      expect(source.status().lastError).toMatch(/put the images/);
    } finally {
      await empty.remove();
    }
  });

  it('drops a FIFO, a symlink to /dev/zero, a folder and an oversized file as counted frames with their reason, and plays on', async () => {
    const hostile = await tempDir('replay-hostile');
    try {
      await writeFile(join(hostile.path, 'a.jpg'), await noiseJpeg(8, 8, 1));
      execFileSync('mkfifo', [join(hostile.path, 'b-fifo.jpg')]);
      await symlink('/dev/zero', join(hostile.path, 'c-zero.jpg'));
      await mkdir(join(hostile.path, 'd-folder.jpg'));
      await writeFile(join(hostile.path, 'e-big.jpg'), Buffer.alloc(5000));
      await writeFile(join(hostile.path, 'f.jpg'), await noiseJpeg(8, 8, 2));
      const source = createFrameSource({ kind: 'replay', folder: hostile.path, fps: 0, loop: false, maxFrameBytes: 4096 });
      const frames: Frame[] = [];
      await source.start((frame) => void frames.push(frame));
      await source.ended();
      expect(frames.map((f) => f.origin)).toEqual(['a.jpg', 'f.jpg']);
      expect(source.status()).toMatchObject({ state: 'ended', framesReceived: 2, framesDropped: 3 });
      // The folder entry is not listed as a file; the last refusal is the reason shown.
      expect(source.status().lastError).toMatch(/e-big\.jpg is 5000 bytes, more than the 4096 bytes allowed/);
      const reasons = logs.filter((l) => l.includes('frame dropped')).join('\n');
      expect(reasons).toMatch(/b-fifo\.jpg is a FIFO \(named pipe\), not a regular file/);
      expect(reasons).toMatch(/c-zero\.jpg is a character device, not a regular file/);
    } finally {
      await hostile.remove();
    }
  });

  it('rejects a negative fps when created', () => {
    expect(() => createFrameSource({ kind: 'replay', folder: folder.path, fps: -1 })).toThrow(UserError);
  });
});
