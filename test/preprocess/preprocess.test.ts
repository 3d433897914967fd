import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { ImageError, imageLimitDefaults, Preprocessor, RoiError, thumbnail } from '../../dist/preprocess/index.js';
import { pngBomb } from '../helpers/hostile.js';

const graySpec = { width: 3, height: 2, colour: 'gray' as const, mean: [0.5], std: [0.5] };
const rgbSpec = { width: 2, height: 2, colour: 'rgb' as const, mean: [0.5, 0.25, 0], std: [0.5, 0.25, 1] };

function png(pixels: number[], width: number, height: number, channels: 1 | 3 | 4): Promise<Buffer> {
  return sharp(Buffer.from(pixels), { raw: { width, height, channels } }).png().toBuffer();
}

function expectClose(actual: Float32Array, expected: number[]): void {
  expect(actual.length).toBe(expected.length);
  expected.forEach((value, i) => expect(actual[i]).toBeCloseTo(value, 6));
}

describe('Preprocessor', () => {
  it('normalises a gray PNG to (pixel/255 - mean) / std', async () => {
    const pre = new Preprocessor(graySpec);
    const out = pre.createTensor();
    await pre.toTensor(await png([0, 51, 255, 102, 204, 153], 3, 2, 1), out);
    expectClose(out, [0, 51, 255, 102, 204, 153].map((v) => (v / 255 - 0.5) / 0.5));
  });

  it('writes rgb as CHW planes and drops alpha', async () => {
    const pre = new Preprocessor(rgbSpec);
    const out = pre.createTensor();
    const rgba = [255, 0, 51, 10, 0, 255, 102, 20, 51, 102, 153, 255, 204, 153, 0, 0];
    await pre.toTensor(await png(rgba, 2, 2, 4), out);
    const r = [255, 0, 51, 204];
    const g = [0, 255, 102, 153];
    const b = [51, 102, 153, 0];
    expectClose(out, [
      ...r.map((v) => (v / 255 - 0.5) / 0.5),
      ...g.map((v) => (v / 255 - 0.25) / 0.25),
      ...b.map((v) => v / 255),
    ]);
  });

  it('turns colour into gray with Pillow convert("L") luma', async () => {
    const pre = new Preprocessor({ width: 2, height: 1, colour: 'gray', mean: [0], std: [1] });
    const out = pre.createTensor();
    await pre.toTensor(await png([255, 0, 0, 10, 200, 30], 2, 1, 3), out);
    // Pillow: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16 -> 76 and 124 (checked with Pillow)
    expectClose(out, [76 / 255, 124 / 255]);
  });

  it('repeats a gray image into three planes for an rgb model', async () => {
    const pre = new Preprocessor({ width: 1, height: 1, colour: 'rgb', mean: [0, 0, 0], std: [1, 1, 1] });
    const out = pre.createTensor();
    await pre.toTensor(await png([102], 1, 1, 1), out);
    expectClose(out, [0.4, 0.4, 0.4]);
  });

  it('crops the ROI before resizing', async () => {
    // 4x4 gray image; the ROI is its 2x1 strip at x=1, y=2.
    const pixels = Array.from({ length: 16 }, (_, i) => i * 10);
    const pre = new Preprocessor({ width: 2, height: 1, colour: 'gray', mean: [0], std: [1] }, { x: 1, y: 2, width: 2, height: 1 });
    const out = pre.createTensor();
    await pre.toTensor(await png(pixels, 4, 4, 1), out);
    expectClose(out, [90 / 255, 100 / 255]);
  });

  it('resizes to the model input with fit fill (aspect ratio not kept)', async () => {
    const pre = new Preprocessor({ width: 8, height: 2, colour: 'gray', mean: [0], std: [1] });
    const out = pre.createTensor();
    const uniform = await sharp({ create: { width: 30, height: 40, channels: 3, background: { r: 51, g: 51, b: 51 } } }).jpeg().toBuffer();
    await pre.toTensor(uniform, out);
    for (const value of out) expect(value).toBeCloseTo(51 / 255, 1);
  });

  it('explains an ROI outside the image with the image size', async () => {
    const pre = new Preprocessor(graySpec, { x: 2, y: 0, width: 3, height: 2 });
    const image = await png([0, 0, 0, 0, 0, 0], 3, 2, 1);
    const err = await pre.toTensor(image, pre.createTensor()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RoiError);
    expect((err as Error).message).toBe('roi { x: 2, y: 0, width: 3, height: 2 } lies outside the 3x2 image');
    expect((err as RoiError).hint).toContain('x + width <= 3');
    expect(() => new Preprocessor(graySpec, { x: -1, y: 0, width: 1, height: 1 })).toThrow(/roi\.x is -1/);
  });

  it('throws ImageError with the reason for corrupt or truncated bytes', async () => {
    const pre = new Preprocessor(graySpec);
    const out = pre.createTensor();
    await expect(pre.toTensor(Buffer.from('definitely not an image'), out)).rejects.toThrow(ImageError);
    await expect(pre.toTensor(Buffer.from('definitely not an image'), out)).rejects.toThrow('cannot decode image: it is neither a JPEG nor a PNG (it begins "definite")');
    const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } }).jpeg().toBuffer();
    await expect(pre.toTensor(jpeg.subarray(0, jpeg.length / 2), out)).rejects.toThrow(ImageError);
  });

  it('reuses the caller buffer across frames and refuses a wrong-sized one', async () => {
    const pre = new Preprocessor(graySpec);
    const out = pre.createTensor();
    await pre.toTensor(await png([0, 0, 0, 0, 0, 0], 3, 2, 1), out);
    expect(out[0]).toBeCloseTo(-1);
    const sameBuffer = out.buffer;
    await pre.toTensor(await png([255, 255, 255, 255, 255, 255], 3, 2, 1), out);
    expect(out.buffer).toBe(sameBuffer);
    expectClose(out, [1, 1, 1, 1, 1, 1]);
    await expect(pre.toTensor(await png([0], 1, 1, 1), new Float32Array(5))).rejects.toThrow(/holds 5 floats.*needs 6/);
  });

  it('refuses mean/std that do not fit the colour', () => {
    expect(() => new Preprocessor({ ...graySpec, colour: 'rgb' })).toThrow(/needs 3 mean and std values, got 1 and 1/);
  });
});

describe('image limits', () => {
  it('refuses a 16000x16000 PNG (30 KB on disk, a decompression bomb) by default, before decoding it', async () => {
    const bomb = pngBomb(16000, 16000);
    expect(bomb.length).toBeLessThan(64 * 1024);
    const pre = new Preprocessor(graySpec);
    const error = await pre.toTensor(bomb, pre.createTensor()).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ImageError);
    expect((error as ImageError).message).toBe('cannot decode image: the image is 16000x16000 pixels, more than capture.maxFramePixels (50000000)');
    await expect(thumbnail(bomb)).rejects.toThrow(/16000x16000 pixels, more than capture.maxFramePixels/);
    expect(imageLimitDefaults.maxPixels).toBe(50_000_000);
  });

  it('refuses every format but JPEG and PNG before decoding, SVG of any size included', async () => {
    const pre = new Preprocessor(graySpec, undefined, { maxBytes: imageLimitDefaults.maxBytes, maxPixels: 1_000_000_000 });
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="12000" height="12000"><rect width="100%" height="100%"/></svg>');
    await expect(pre.toTensor(svg, pre.createTensor())).rejects.toThrow('cannot decode image: it is neither a JPEG nor a PNG (it begins "<svg xml")');
    await expect(thumbnail(svg)).rejects.toThrow(/neither a JPEG nor a PNG/);
    const gray = sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } });
    for (const other of [await gray.clone().webp().toBuffer(), await gray.clone().gif().toBuffer(), await gray.clone().tiff().toBuffer()]) {
      await expect(pre.toTensor(other, pre.createTensor())).rejects.toThrow(/neither a JPEG nor a PNG/);
    }
    await pre.toTensor(await gray.clone().jpeg().toBuffer(), pre.createTensor());
    await pre.toTensor(await gray.clone().png().toBuffer(), pre.createTensor());
  });

  it('takes an image of exactly maxPixels and refuses one pixel more, and larger encoded images than maxBytes', async () => {
    const image = await png(Array.from({ length: 100 }, (_, i) => i), 10, 10, 1);
    const at = new Preprocessor(graySpec, undefined, { maxBytes: image.length, maxPixels: 100 });
    await at.toTensor(image, at.createTensor());
    const under = new Preprocessor(graySpec, undefined, { maxBytes: image.length, maxPixels: 99 });
    await expect(under.toTensor(image, under.createTensor())).rejects.toThrow('the image is 10x10 pixels, more than capture.maxFramePixels (99)');
    const small = new Preprocessor(graySpec, undefined, { maxBytes: image.length - 1, maxPixels: 100 });
    await expect(small.toTensor(image, small.createTensor())).rejects.toThrow(`the image is ${image.length} bytes, more than capture.maxFrameBytes (${image.length - 1})`);
  });
});

describe('thumbnail', () => {
  it('makes a PNG of the ROI with the longest side 64 px', async () => {
    const image = await sharp({ create: { width: 400, height: 200, channels: 3, background: '#336699' } }).jpeg().toBuffer();
    const meta = await sharp(await thumbnail(image)).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 32]);
    const cropped = await sharp(await thumbnail(image, { roi: { x: 0, y: 0, width: 100, height: 200 } })).metadata();
    expect([cropped.width, cropped.height]).toEqual([32, 64]);
    const small = await sharp(await thumbnail(image, { roi: { x: 0, y: 0, width: 20, height: 10 } })).metadata();
    expect([small.width, small.height]).toEqual([20, 10]);
    await expect(thumbnail(Buffer.from('nope'))).rejects.toThrow(ImageError);
  });
});
