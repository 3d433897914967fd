import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { readImageHeader } from '../../dist/preprocess/index.js';
import { repoRoot } from '../helpers/daemon.js';

describe('readImageHeader', () => {
  it('reads the size sharp reads, for JPEG (baseline, progressive, with EXIF) and PNG', async () => {
    const images: Buffer[] = readdirSync(join(repoRoot, 'samples/line/frames')).slice(0, 5).map((f) => readFileSync(join(repoRoot, 'samples/line/frames', f)));
    const raw = { raw: { width: 640, height: 480, channels: 3 as const } };
    const pixels = Buffer.alloc(640 * 480 * 3, 90);
    images.push(
      await sharp(pixels, raw).jpeg().toBuffer(),
      await sharp(pixels, raw).jpeg({ progressive: true }).withMetadata({ orientation: 6 }).toBuffer(),
      await sharp(pixels, raw).resize(31, 17).png().toBuffer(),
      await sharp(pixels, raw).extract({ left: 0, top: 0, width: 300, height: 299 }).png({ palette: true }).toBuffer(),
    );
    for (const image of images) {
      const { width, height, format } = await sharp(image).metadata();
      expect(readImageHeader(image)).toEqual({ type: format === 'png' ? 'image/png' : 'image/jpeg', width, height });
    }
  });

  it('says nothing for what is not a JPEG or PNG header, or is cut short', () => {
    expect(readImageHeader(Buffer.from('GIF89a....'))).toBeUndefined();
    expect(readImageHeader(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00]))).toBeUndefined();
    expect(readImageHeader(Buffer.alloc(0))).toBeUndefined();
    expect(readImageHeader(Buffer.from([0xff, 0xd8, 0xff, 0xda, 0x00, 0x08, 0, 0, 0, 0, 0, 0]))).toBeUndefined();
  });
});
