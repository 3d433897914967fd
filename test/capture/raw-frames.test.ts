import { afterEach, describe, expect, it } from 'vitest';
import { createFrameSource, RawFrameSplitter, rawStride, type Frame, type FrameSource } from '../../dist/capture/index.js';
import { SupervisedProcessSource } from '../../dist/capture/supervisor.js';
import type { RawImage } from '../../dist/common/index.js';
import { captureLogs, waitFor } from './helpers.js';

captureLogs();

const layout = { width: 30, height: 4, channels: 1 as const, cropped: true };

/** Frame i: every byte is i (rows padded to 32 bytes, as GStreamer pads GRAY8 of width 30). */
function stream(count: number): Buffer {
  const frameBytes = rawStride(layout) * layout.height;
  return Buffer.concat(Array.from({ length: count }, (_, i) => Buffer.alloc(frameBytes, i + 1)));
}

const values = (frames: RawImage[]) => frames.map((f) => [f.pixels[0], f.pixels[f.pixels.length - 1], f.pixels.length]);

describe('raw frame splitting', () => {
  it('pads rows to 4 bytes as GStreamer does: GRAY8 width 30 -> stride 32, RGB width 30 -> 92', () => {
    expect(rawStride({ width: 30, channels: 1 })).toBe(32);
    expect(rawStride({ width: 30, channels: 3 })).toBe(92);
    expect(rawStride({ width: 28, channels: 1 })).toBe(28);
  });

  it('cuts fixed-size frames out of chunks of any size: short reads, a frame across chunks, several frames in one chunk', () => {
    const data = stream(5);
    for (const chunkSize of [1, 7, 127, 128, 129, 300, data.length]) {
      const splitter = new RawFrameSplitter(layout);
      const frames: RawImage[] = [];
      for (let at = 0; at < data.length; at += chunkSize) frames.push(...splitter.push(data.subarray(at, at + chunkSize)));
      expect(values(frames), `chunks of ${chunkSize}`).toEqual([1, 2, 3, 4, 5].map((v) => [v, v, 128]));
      expect(frames[0]).toMatchObject({ width: 30, height: 4, channels: 1, stride: 32, cropped: true });
      expect(splitter.stats).toMatchObject({ frames: 5, truncated: 0 });
    }
  });

  it('passes a whole frame inside a chunk on as a view of the chunk; one across chunks is copied and stays as it was', () => {
    const splitter = new RawFrameSplitter(layout);
    const data = stream(3);
    // Exactly one frame, then a frame and a half, then the rest.
    const chunks = [data.subarray(0, 128), data.subarray(128, 320), data.subarray(320)];
    const [[one], [two], [three]] = chunks.map((chunk) => splitter.push(chunk));
    expect(values([one!, two!, three!])).toEqual([1, 2, 3].map((v) => [v, v, 128]));
    // A view follows the chunk's bytes; a copy does not.
    data.fill(0);
    expect(values([one!, two!, three!])).toEqual([[0, 0, 128], [0, 0, 128], [3, 3, 128]]);
  });

  it('drops a frame cut short by a restart and counts it; the next stream starts on a frame boundary', () => {
    const splitter = new RawFrameSplitter(layout);
    const data = stream(3);
    expect(values(splitter.push(data.subarray(0, 128 + 50)))).toEqual([[1, 1, 128]]);
    splitter.reset();
    expect(splitter.stats.truncated).toBe(1);
    expect(splitter.framesDropped).toBe(1);
    expect(values(splitter.push(data))).toEqual([1, 2, 3].map((v) => [v, v, 128]));
    splitter.reset();
    expect(splitter.stats).toMatchObject({ frames: 4, truncated: 1 });
  });
});

describe('raw frames from a process pipe', () => {
  let source: FrameSource | undefined;
  afterEach(async () => {
    await source?.stop();
    source = undefined;
  });

  it('a process that stalls mid-frame is restarted; the half frame is dropped and later frames arrive whole', async () => {
    // Writes two frames and a half, then nothing: the stall timeout restarts it. A restart begins a fresh stream.
    const frameBytes = rawStride(layout) * layout.height;
    const script = `
      const frame = (v) => Buffer.alloc(${frameBytes}, v);
      process.stdout.write(Buffer.concat([frame(1), frame(2), frame(3).subarray(0, ${frameBytes / 2})]));
      setInterval(() => {}, 1000);`;
    source = new SupervisedProcessSource({
      name: 'raw-stall',
      kind: 'gstreamer',
      command: async () => ({ file: process.execPath, args: ['-e', script] }),
      installHint: '',
      raw: layout,
      supervision: { stallTimeoutMs: 1500, restartInitialMs: 50, stopGraceMs: 200 },
    });
    const frames: Frame[] = [];
    await source.start((frame) => void frames.push(frame));
    await waitFor(() => frames.length >= 4, 30_000, 'two frames from each of two runs');
    const status = source.status();
    expect(status.restarts).toBeGreaterThanOrEqual(1);
    expect(status.lastError).toMatch(/no frame for 1500 ms/);
    expect(status.splitter!.truncated).toBeGreaterThanOrEqual(1);
    expect(status.framesDropped).toBe(status.splitter!.truncated);
    // Whole frames only, each of one value: 1, 2 from the first run, 1, 2 from the second.
    expect(frames.slice(0, 4).map((f) => (f.data as RawImage).pixels[0])).toEqual([1, 2, 1, 2]);
    expect(frames.every((f) => new Set((f.data as RawImage).pixels).size === 1 && (f.data as RawImage).pixels.length === frameBytes)).toBe(true);
  });

  it('a real GStreamer pipeline (videotestsrc) crops, scales and converts: GRAY8 frames of the model size with padded rows', async () => {
    // 320x240 SMPTE bars; the ROI is the top-left bar (75% white: luma 180) and a sliver of the next (yellow).
    source = createFrameSource({
      kind: 'gstreamer',
      preset: 'test',
      width: 320,
      height: 240,
      fps: 30,
      output: { width: 30, height: 20, colour: 'gray', roi: { x: 4, y: 10, width: 36, height: 100 } },
      restartInitialMs: 50,
    });
    const frames: Frame[] = [];
    await source.start((frame) => void frames.push(frame));
    await waitFor(() => frames.length >= 3, 15_000, '3 raw frames');
    const image = frames[2]!.data as RawImage;
    expect(image).toMatchObject({ width: 30, height: 20, channels: 1, stride: 32, cropped: true });
    expect(image.pixels.length).toBe(32 * 20);
    // Inside the ROI the bar is uniform 75% white (YUV 180 in GStreamer's SMPTE pattern).
    const row = Array.from(image.pixels.subarray(10 * 32, 10 * 32 + 20));
    for (const v of row) expect(v).toBeGreaterThanOrEqual(175);
    expect(source.status()).toMatchObject({ state: 'running', framesDropped: 0, lastError: null });

    await source.stop();
    // RGB: three bytes a pixel, rows padded (30 * 3 = 90 -> 92).
    source = createFrameSource({ kind: 'gstreamer', preset: 'test', width: 320, height: 240, fps: 30, output: { width: 30, height: 20, colour: 'rgb' }, restartInitialMs: 50 });
    const rgb: Frame[] = [];
    await source.start((frame) => void rgb.push(frame));
    await waitFor(() => rgb.length >= 2, 15_000, '2 raw RGB frames');
    expect(rgb[1]!.data).toMatchObject({ width: 30, height: 20, channels: 3, stride: 92 });
    expect((rgb[1]!.data as RawImage).pixels.length).toBe(92 * 20);
  });

  it('refuses an ROI outside the camera picture before starting anything', () => {
    expect(() => createFrameSource({ kind: 'gstreamer', preset: 'test', width: 320, height: 240, output: { width: 28, height: 28, colour: 'gray', roi: { x: 300, y: 0, width: 40, height: 40 } } })).toThrow(
      /lies outside the camera's 320x240 picture/,
    );
  });
});
