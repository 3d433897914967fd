/**
 * Corrupt and hostile frames fed in process to what a camera frame meets first: the header reader,
 * the preprocessor (sharp decode, ROI, resize, tensor) and the thumbnail of a kept anomaly. Each
 * must decode or end in an ImageError/RoiError; a bomb (far more pixels than any camera) must be
 * refused, not decoded. Formats other than JPEG and PNG are among the inputs: they must be refused.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { Preprocessor, readImageHeader, thumbnail } from '../../dist/preprocess/index.js';
import { tinyModel } from '../helpers/daemon.js';
import { crc32, pngBomb } from '../helpers/hostile.js';
import type { Draw } from './draw.js';
import { Defect, type Tally } from './tally.js';

interface FrameInput {
  kind: string;
  data: Buffer;
  /** Declares more pixels than any camera: decoding it is a failure. */
  bomb?: boolean;
}

let seeds: Buffer[] | undefined;

/** Small real images in every format sharp reads, to mutate. */
async function seedImages(): Promise<Buffer[]> {
  if (seeds) return seeds;
  const pixels = Buffer.alloc(64 * 48 * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7) % 256;
  const image = () => sharp(pixels, { raw: { width: 64, height: 48, channels: 3 } });
  seeds = await Promise.all([image().png().toBuffer(), image().jpeg().toBuffer(), image().jpeg({ progressive: true }).toBuffer(), image().webp().toBuffer(), image().gif().toBuffer(), image().tiff().toBuffer(), image().grayscale().png().toBuffer()]);
  seeds.push(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48"><rect width="64" height="48" fill="#888"/></svg>'));
  return seeds;
}

/** A PNG whose IHDR claims width x height (with a right CRC, so only the size is wrong). */
function pngClaiming(png: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(png);
  out.writeUInt32BE(width, 16);
  out.writeUInt32BE(height, 20);
  out.writeUInt32BE(crc32(out.subarray(12, 29)), 29);
  return out;
}

/** A JPEG whose frame header (SOFn) claims width x height. */
function jpegClaiming(jpeg: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(jpeg);
  for (let at = 2; at + 9 < out.length; ) {
    const marker = out[at + 1]!;
    if (marker === 0xc0 || marker === 0xc2) {
      out.writeUInt16BE(height, at + 5);
      out.writeUInt16BE(width, at + 7);
      return out;
    }
    at += 2 + out.readUInt16BE(at + 2);
  }
  return out;
}

const magics = ['\x89PNG\r\n\x1a\n', '\xff\xd8\xff', 'GIF89a', 'RIFF\0\0\0\0WEBP', 'II*\0', 'MM\0*', '<svg', 'BM', '\0\0\0\x0cjP  ', '%PDF-1.4'].map((m) => Buffer.from(m, 'latin1'));

export async function frameInput(draw: Draw): Promise<FrameInput> {
  const all = await seedImages();
  const seed = draw.pick(all);
  const [png, jpeg] = [all[0]!, all[1]!];
  // From just past the camera-sized limit (50 MP: 7,072 a side) up, both below sharp's own limit
  // (16,383 a side) and far beyond it.
  const big = (max: number) => draw.int(7_100, draw.pick([16_383, max]));
  const kinds: (() => FrameInput)[] = [
    () => ({ kind: 'truncated', data: draw.truncate(seed) }),
    () => ({ kind: 'flipped bytes', data: draw.flip(seed, draw.int(1, 32)) }),
    () => ({ kind: 'random bytes', data: draw.bytes(draw.int(0, 8192)) }),
    () => ({ kind: 'wrong magic', data: Buffer.concat([draw.pick(magics), seed.subarray(draw.int(0, 16))]) }),
    () => ({ kind: 'magic then garbage', data: Buffer.concat([draw.pick(magics), draw.bytes(draw.int(0, 4096))]) }),
    () => ({ kind: 'garbage around', data: Buffer.concat([draw.bytes(draw.int(0, 64)), seed, draw.bytes(draw.int(0, 64))]) }),
    () => ({ kind: 'two images', data: Buffer.concat([seed, draw.pick(all)]) }),
    () => ({ kind: 'png claiming huge size', data: pngClaiming(png, big(2 ** 31 - 1), big(2 ** 31 - 1)), bomb: true }),
    () => {
      // A real one, that decodes: only the pixel limit stops it (a size that only claims fails to decode anyway).
      const side = draw.int(7_100, 16_383);
      return { kind: `png bomb of ${side}x${side}`, data: pngBomb(side, side), bomb: true };
    },
    () => ({ kind: 'png claiming zero size', data: pngClaiming(png, draw.int(0, 1) * 64, 0) }),
    () => ({ kind: 'jpeg claiming huge size', data: jpegClaiming(jpeg, big(65_535), big(65_535)), bomb: true }),
    () => ({ kind: 'jpeg claiming zero size', data: jpegClaiming(jpeg, 0, draw.int(0, 48)) }),
    () => {
      // Sides from below sharp's own limit (16383 x 16383 pixels) to far past it.
      const side = draw.int(12_000, 100_000);
      return { kind: `svg of ${side}x${side}`, data: Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${side}" height="${side}"><rect width="100%" height="100%" fill="#888"/></svg>`), bomb: true };
    },
    () => ({ kind: 'svg with an external file', data: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="8" height="8"><image xlink:href="file:///dev/zero" width="8" height="8"/></svg>') }),
    () => ({ kind: 'empty', data: Buffer.alloc(0) }),
  ];
  return draw.pick(kinds)();
}

const manifest = JSON.parse(readFileSync(join(tinyModel, 'manifest.json'), 'utf8')) as { input: ConstructorParameters<typeof Preprocessor>[0] };

/** Feeds `count` hostile frames (or until `until`), each a probe of family `frames`. */
export async function fuzzFrames(tally: Tally, draw: Draw, count: number, until = Infinity): Promise<void> {
  const whole = new Preprocessor(manifest.input);
  const cropped = new Preprocessor(manifest.input, { x: 8, y: 8, width: 40, height: 32 });
  const tensor = whole.createTensor();
  for (let i = 0; i < count && Date.now() < until; i++) {
    const input = await frameInput(draw);
    const pre = draw.chance(0.2) ? cropped : whole;
    await tally.probe(
      'frames',
      `${input.kind} (${input.data.length} bytes${pre === cropped ? ', roi' : ''}): ${input.data.subarray(0, 24).toString('hex')}`,
      async () => {
        const header = readImageHeader(input.data);
        await pre.toTensor(input.data, tensor);
        await thumbnail(input.data, pre.roi ? { roi: pre.roi } : {});
        if (input.bomb) throw new Defect(`decoded although it claims ${header ? `${header.width}x${header.height}` : 'a huge size'}: no pixel limit`, 'memory');
        return 'accepted';
      },
      30_000,
    );
  }
}
