import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import type { RawImage } from '../../dist/common/index.js';
import { LiveView } from '../../dist/ui/live.js';

/** What LiveView reads of a decided frame. */
function decided(seq: number, data: Buffer | RawImage) {
  return {
    frame: { seq, capturedAt: Date.now(), data, origin: 'cam' },
    decision: { anomaly: false, score: 0.1, threshold: 0.5, label: 'good', neighbours: [] },
    model: { key: 'm@1' },
    vector: new Float32Array(0),
  } as unknown as Parameters<LiveView['consume']>[0];
}

describe('LiveView frames', () => {
  it('serves an encoded frame as it came, and encodes a raw camera frame to JPEG only when a page asks, once', async () => {
    const live = new LiveView();
    const jpeg = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } }).jpeg().toBuffer();
    live.consume(decided(1, jpeg));
    // A 30x20 gray frame, rows padded to 32 bytes: left half dark, right half bright.
    const pixels = new Uint8Array(32 * 20);
    for (let y = 0; y < 20; y++) for (let x = 0; x < 30; x++) pixels[y * 32 + x] = x < 15 ? 20 : 230;
    live.consume(decided(2, { width: 30, height: 20, channels: 1, stride: 32, pixels, cropped: true }));

    expect(live.latest()).toMatchObject({ id: 2, seq: 2, cropped: true });
    expect(await live.frame(1)).toBe(jpeg);
    const first = live.frame(2);
    expect(live.frame(2)).toBe(first);
    const shown = await first!;
    const { data, info } = await sharp(shown).raw().toBuffer({ resolveWithObject: true });
    expect(info).toMatchObject({ format: 'raw', width: 30, height: 20 });
    // JPEG keeps the halves apart (within its loss): the padding bytes did not shift the rows.
    const at = (x: number, y: number) => data[(y * 30 + x) * info.channels]!;
    expect(at(3, 7)).toBeLessThan(40);
    expect(at(26, 7)).toBeGreaterThan(210);
    expect(live.frame(3)).toBeUndefined();
    live.close();
  });
});

/** A decided frame of a camera (its `site/line/camera` and ROI). */
function fromCamera(seq: number, key: string, data: Buffer) {
  const d = decided(seq, data) as unknown as { frame: Record<string, unknown> };
  d.frame['camera'] = { key, site: 's', line: 'l', camera: key.split('/')[2], roi: { x: 1, y: 2, width: 3, height: 4 } };
  return d as unknown as Parameters<LiveView['consume']>[0];
}

describe('LiveView with several cameras', () => {
  it('keeps each camera\'s frames apart: its latest frame, its image by the view\'s own id (seqs repeat across cameras), its ROI, and a stream of one camera only', async () => {
    const live = new LiveView();
    const image = (shade: number) => sharp({ create: { width: 8, height: 8, channels: 3, background: { r: shade, g: shade, b: shade } } }).png().toBuffer();
    const [a, b] = [await image(10), await image(240)];
    const pushed: { camera: string | null; seq: number }[] = [];
    const unsubscribe = live.subscribe((f) => pushed.push({ camera: f.camera, seq: f.seq }), 's/l/b');
    live.consume(fromCamera(1, 's/l/a', a));
    live.consume(fromCamera(1, 's/l/b', b));
    live.consume(fromCamera(2, 's/l/a', a));

    expect(live.latest()).toMatchObject({ camera: 's/l/a', seq: 2 });
    const ofB = live.latest('s/l/b')!;
    expect(ofB).toMatchObject({ camera: 's/l/b', seq: 1, roi: { x: 1, y: 2, width: 3, height: 4 } });
    expect(live.latest('s/l/c')).toBeUndefined();
    // Both cameras sent a frame 1: each image is found by its own id.
    expect(await live.frame(ofB.id)).toBe(b);
    expect(await live.frame(live.latest('s/l/a')!.id)).toBe(a);
    // The stream of camera b is told of b's frame only, once.
    await expect.poll(() => pushed.length).toBe(1);
    expect(pushed).toEqual([{ camera: 's/l/b', seq: 1 }]);
    live.consume(fromCamera(3, 's/l/a', a));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(pushed).toHaveLength(1);
    unsubscribe();
    live.close();
  });
});
