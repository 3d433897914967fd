import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { JpegSplitter } from '../../dist/capture/index.js';
import { noiseJpeg } from './helpers.js';

/** Inserts an APP1 (EXIF) segment right after SOI whose payload holds a whole thumbnail JPEG. */
function withThumbnail(jpeg: Buffer, thumbnail: Buffer): Buffer {
  const payload = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), thumbnail]);
  const header = Buffer.from([0xff, 0xe1, (payload.length + 2) >> 8, (payload.length + 2) & 0xff]);
  return Buffer.concat([jpeg.subarray(0, 2), header, payload, jpeg.subarray(2)]);
}

function feed(splitter: JpegSplitter, chunks: Buffer[]): Buffer[] {
  return chunks.flatMap((chunk) => splitter.push(chunk));
}

const garbage = Buffer.from([0x00, 0xff, 0x12, 0xff, 0xff, 0xd9, 0x41, 0xff]);

describe('JpegSplitter', async () => {
  const a = await noiseJpeg(16, 16, 1);
  const b = await noiseJpeg(24, 8, 2);
  const thumbnail = await noiseJpeg(8, 8, 3);
  const c = withThumbnail(await noiseJpeg(16, 8, 4), thumbnail);
  const big = await noiseJpeg(48, 48, 5);
  // Cut inside the scan data, where a camera glitch usually cuts a frame.
  const aTruncated = a.subarray(0, a.indexOf(Buffer.from([0xff, 0xda])) + 40);

  it('test images really contain the tricky byte patterns', async () => {
    const sosAt = a.indexOf(Buffer.from([0xff, 0xda]));
    expect(a.indexOf(Buffer.from([0xff, 0x00]), sosAt)).toBeGreaterThan(sosAt);
    expect(c.indexOf(Buffer.from([0xff, 0xd9]))).toBeLessThan(c.length - 2);
    expect((await sharp(c).metadata()).width).toBe(16);
  });

  it('separates frames with garbage before, between and after them', () => {
    const splitter = new JpegSplitter();
    const frames = splitter.push(Buffer.concat([garbage, a, garbage, b, garbage]));
    expect(frames).toEqual([a, b]);
    splitter.reset(); // the trailing FF might have started a marker
    expect(splitter.stats).toMatchObject({ frames: 2, truncated: 0, oversized: 0, corrupt: 0, skippedBytes: garbage.length * 3 });
  });

  it('does not end a frame at the FFD9 of an EXIF thumbnail inside APP1', () => {
    const splitter = new JpegSplitter();
    expect(splitter.push(Buffer.concat([c, a]))).toEqual([c, a]);
  });

  it('treats FF00 stuffing and RSTn in scan data as data', () => {
    const sos = [0xff, 0xda, 0x00, 0x02];
    const scan = [0x12, 0xff, 0x00, 0x34, 0xff, 0xd3, 0x56, 0xff, 0xff, 0xd7, 0x78];
    const jpeg = Buffer.from([0xff, 0xd8, ...sos, ...scan, 0xff, 0xd9]);
    expect(new JpegSplitter().push(jpeg)).toEqual([jpeg]);
  });

  it('drops a frame cut short by the next SOI and counts it', () => {
    const splitter = new JpegSplitter();
    const frames = splitter.push(Buffer.concat([aTruncated, b, c.subarray(0, 40)]));
    expect(frames).toEqual([b]);
    expect(splitter.stats.truncated).toBe(1);
    splitter.reset(); // the stream ended inside c
    expect(splitter.stats.truncated).toBe(2);
    expect(splitter.framesDropped).toBe(2);
    expect(splitter.push(a)).toEqual([a]);
  });

  it('drops an oversized frame, counts it and resyncs, even when it arrives byte by byte', () => {
    const limit = Math.max(b.length, thumbnail.length) + 1;
    expect(big.length).toBeGreaterThan(limit);
    for (const bytewise of [false, true]) {
      const splitter = new JpegSplitter(limit);
      const stream = Buffer.concat([b, big, thumbnail]);
      const chunks = bytewise ? [...stream].map((byte) => Buffer.from([byte])) : [stream];
      expect(feed(splitter, chunks)).toEqual([b, thumbnail]);
      expect(splitter.stats.oversized).toBe(1);
    }
  });

  it('keeps a frame of exactly maxFrameBytes and drops one byte more, however it is chunked', () => {
    for (const bytewise of [false, true]) {
      const chunks = bytewise ? [...b].map((byte) => Buffer.from([byte])) : [b];
      const exact = new JpegSplitter(b.length);
      expect(feed(exact, chunks), `limit = frame size, bytewise ${bytewise}`).toEqual([b]);
      expect(exact.stats.oversized).toBe(0);
      const under = new JpegSplitter(b.length - 1);
      expect(feed(under, chunks), `limit = frame size - 1, bytewise ${bytewise}`).toEqual([]);
      expect(under.stats.oversized).toBe(1);
    }
  });

  it('counts a frame cut by the next SOI as oversized once it had more than maxFrameBytes, else as truncated', () => {
    const limit = b.length + 1;
    // The first chunk ends inside big; the next starts a new frame.
    for (const [kept, counted] of [
      [limit, { truncated: 1, oversized: 0 }],
      [limit + 1, { truncated: 0, oversized: 1 }],
    ] as const) {
      const splitter = new JpegSplitter(limit);
      expect(feed(splitter, [big.subarray(0, kept), b])).toEqual([b]);
      expect(splitter.stats, `${kept} bytes kept, limit ${limit}`).toMatchObject({ frames: 1, ...counted });
    }
  });

  it('counts a frame with a broken marker structure as corrupt', () => {
    const splitter = new JpegSplitter();
    expect(splitter.push(Buffer.concat([Buffer.from([0xff, 0xd8, 0x00, 0x01]), a]))).toEqual([a]);
    expect(splitter.stats.corrupt).toBe(1);
  });

  describe('marker by marker', () => {
    const SOI = [0xff, 0xd8];
    const EOI = [0xff, 0xd9];
    const sos = [0xff, 0xda, 0x00, 0x02];
    const app0 = [0xff, 0xe0, 0x00, 0x04, 0x41, 0x42];
    const jpeg = (...bytes: number[]) => Buffer.from([...SOI, ...bytes, ...EOI]);
    const cases: [what: string, stream: Buffer, frames: Buffer[], stats: Record<string, number>][] = [
      ['FF then a byte that is not a marker, then D8: garbage, not a frame', Buffer.concat([Buffer.from([0xff, 0x12, 0xd8]), b]), [b], { truncated: 0, skippedBytes: 3 }],
      ['fill FF before SOI', Buffer.concat([Buffer.from([0xff]), b]), [b], { skippedBytes: 1 }],
      ['TEM and RST0 standalone in the header, RST0 and RST7 in the scan', jpeg(0xff, 0x01, 0xff, 0xd0, ...sos, 0x12, 0xff, 0xd0, 0x34, 0xff, 0xd7), [jpeg(0xff, 0x01, 0xff, 0xd0, ...sos, 0x12, 0xff, 0xd0, 0x34, 0xff, 0xd7)], { corrupt: 0 }],
      ['an empty segment (length 2)', jpeg(0xff, 0xe0, 0x00, 0x02, ...sos, 0x12), [jpeg(0xff, 0xe0, 0x00, 0x02, ...sos, 0x12)], { corrupt: 0 }],
      [
        'a table segment between scans, whose payload holds FF D9',
        jpeg(...sos, 0x12, 0xff, 0xc4, 0x00, 0x05, 0xff, 0xd9, 0x00, ...sos, 0x34),
        [jpeg(...sos, 0x12, 0xff, 0xc4, 0x00, 0x05, 0xff, 0xd9, 0x00, ...sos, 0x34)],
        { corrupt: 0 },
      ],
      ['FF00 in the header (stuffing belongs to scan data only)', Buffer.concat([Buffer.from([...SOI, ...app0, 0xff, 0x00]), a]), [a], { corrupt: 1 }],
      ['a segment length below 2', Buffer.concat([Buffer.from([...SOI, 0xff, 0xe0, 0x00, 0x01]), a]), [a], { corrupt: 1 }],
      // Not a frame: read as a length, it would rewind over the length bytes into the scan.
      ['an SOS length below 2', Buffer.concat([Buffer.from([...SOI, 0xff, 0xda, 0x00, 0x01, 0x12, ...EOI]), a]), [a], { corrupt: 1 }],
      ['a byte other than FF where a marker should start, even D9', Buffer.concat([Buffer.from([...SOI, 0xd9]), a]), [a], { corrupt: 1 }],
      ['the same after a standalone marker', Buffer.concat([Buffer.from([...SOI, 0xff, 0x01, 0xd9]), a]), [a], { corrupt: 1 }],
    ];
    it.each(cases)('%s', (_, stream, frames, stats) => {
      for (const bytewise of [false, true]) {
        const splitter = new JpegSplitter();
        expect(feed(splitter, bytewise ? [...stream].map((byte) => Buffer.from([byte])) : [stream]), `bytewise ${bytewise}`).toEqual(frames);
        expect(splitter.stats).toMatchObject({ frames: frames.length, ...stats });
      }
    });
  });

  it('counts nothing on reset after a whole frame', () => {
    const splitter = new JpegSplitter();
    expect(splitter.push(a)).toEqual([a]);
    splitter.reset();
    expect(splitter.stats).toEqual({ frames: 1, truncated: 0, oversized: 0, corrupt: 0, skippedBytes: 0 });
  });

  it('counts every dropped frame once: truncated, oversized and corrupt', () => {
    const splitter = new JpegSplitter(b.length + 1);
    const corrupt = Buffer.from([0xff, 0xd8, 0x00]);
    // Truncated by the next SOI, too big, corrupt (twice), then a good frame.
    expect(feed(splitter, [aTruncated, big, corrupt, corrupt, b])).toEqual([b]);
    expect(splitter.stats).toMatchObject({ frames: 1, truncated: 1, oversized: 1, corrupt: 2 });
    expect(splitter.framesDropped).toBe(4);
  });

  it('gives the same result wherever the chunk boundaries fall', () => {
    const stream = Buffer.concat([garbage, a, garbage, c, aTruncated, b, garbage]);
    const whole = new JpegSplitter();
    const expected = whole.push(stream);
    expect(expected).toEqual([a, c, b]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const splitter = new JpegSplitter();
      // Buffer.equals: vitest's deep equality is too slow for thousands of buffers.
      const frames = feed(splitter, [stream.subarray(0, cut), stream.subarray(cut)]);
      const same = frames.length === expected.length && frames.every((frame, k) => frame.equals(expected[k]!));
      expect(same, `cut at byte ${cut}`).toBe(true);
      expect(splitter.stats).toEqual(whole.stats);
    }
    const bytewise = new JpegSplitter();
    expect(feed(bytewise, [...stream].map((byte) => Buffer.from([byte])))).toEqual(expected);
    expect(bytewise.stats).toEqual(whole.stats);
  });
});
