import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { cameraFrameRoi, cameraFrames } from '../../dist/bench/camera-frames.js';
import { ImageError, Preprocessor } from '../../dist/preprocess/index.js';
import { decodeJpeg } from '../../dist/preprocess/jpeg.js';

const framesDir = join(import.meta.dirname, '../../samples/line/frames');
const sampleFrames = readdirSync(framesDir)
  .sort()
  .slice(0, 40)
  .map((name) => ({ name, data: readFileSync(join(framesDir, name)) }));
const fixture = (name: string) => readFileSync(join(import.meta.dirname, '../fixtures', name));

const model = { width: 28, height: 28, colour: 'gray' as const, mean: [0.5], std: [0.25] };
const rgbModel = { width: 28, height: 28, colour: 'rgb' as const, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
const whole = (size: { width: number; height: number }) => ({ scale: 1 as const, rows: size.height });

/** Largest and mean absolute difference of two decodes, in gray levels. */
function difference(a: Uint8Array, b: Uint8Array): { max: number; mean: number } {
  expect(a.length).toBe(b.length);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

/** The same, for tensors normalised with std 0.25: back to gray levels. */
function tensorDifference(a: Float32Array, b: Float32Array): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!) * 0.25 * 255;
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

describe('JPEG decoder (full size, against libjpeg through sharp)', () => {
  it('decodes colour frames within 2 gray levels of libjpeg, mean under 0.05', async () => {
    for (const frame of [...sampleFrames.slice(0, 5), ...(await cameraFrames(sampleFrames.slice(0, 2)))]) {
      const ours = decodeJpeg(frame.data, { gray: false, plan: whole })!;
      const theirs = await sharp(frame.data).raw().toBuffer();
      const d = difference(ours.image.pixels, theirs);
      expect(d.max, frame.name).toBeLessThanOrEqual(2);
      expect(d.mean, frame.name).toBeLessThan(0.05);
    }
  });

  it('decodes a one-component (gray) JPEG within 1 level', async () => {
    const gray = await sharp(sampleFrames[0]!.data).grayscale().jpeg({ quality: 90 }).toBuffer();
    const ours = decodeJpeg(gray, { gray: true, plan: whole })!;
    expect(ours.image.channels).toBe(1);
    const d = difference(ours.image.pixels, await sharp(gray).extractChannel(0).raw().toBuffer());
    expect(d.max).toBeLessThanOrEqual(1);
  });

  it('follows restart markers (made with jpegtran -restart 1)', async () => {
    const data = fixture('restart-markers.jpg');
    expect(data.includes(Buffer.from([0xff, 0xdd])), 'the fixture has a DRI segment').toBe(true);
    const ours = decodeJpeg(data, { gray: false, plan: whole })!;
    expect(difference(ours.image.pixels, await sharp(data).raw().toBuffer()).max).toBeLessThanOrEqual(2);
  });

  it('leaves progressive JPEGs to sharp (undefined), and the Preprocessor still reads them', async () => {
    const progressive = await sharp(sampleFrames[0]!.data).jpeg({ progressive: true }).toBuffer();
    expect(decodeJpeg(progressive, { gray: true, plan: whole })).toBeUndefined();
    const pre = new Preprocessor(model);
    const out = pre.createTensor();
    await pre.toTensor(progressive, out);
    expect(out.some((v) => v !== out[0])).toBe(true);
  });

  it('refuses a second frame header (the pixel limit was checked on the first): a small frame cannot declare a huge one later', async () => {
    const data = sampleFrames[0]!.data;
    const sof = data.indexOf(Buffer.from([0xff, 0xc0]));
    const length = data.readUInt16BE(sof + 2);
    const huge = Buffer.from(data.subarray(sof, sof + 2 + length));
    huge.writeUInt16BE(60000, 5);
    huge.writeUInt16BE(60000, 7);
    const crafted = Buffer.concat([data.subarray(0, sof + 2 + length), huge, data.subarray(sof + 2 + length)]);
    const pre = new Preprocessor(model);
    await expect(pre.toTensor(crafted, pre.createTensor())).rejects.toThrow(/more than one frame header/);
  });

  it('refuses a truncated frame with ImageError rather than classifying a half-gray picture', async () => {
    const pre = new Preprocessor(model);
    const data = sampleFrames[0]!.data;
    await expect(pre.toTensor(data.subarray(0, Math.floor(data.length * 0.6)), pre.createTensor())).rejects.toThrow(ImageError);
  });
});

describe('fast path against the sharp path', () => {
  // Differences come from the resize filter (Pillow's bilinear here, lanczos3 in sharp), the
  // DCT-scaled decode (a block average where sharp decodes every pixel) and JPEG rounding.
  it('sample frames (112x112 JPEG -> 28x28 gray, decoded at 1/4): mean difference under 2 gray levels, max under 24', async () => {
    const fast = new Preprocessor(model);
    const slow = new Preprocessor(model, undefined, undefined, { decoder: 'sharp' });
    const a = fast.createTensor();
    const b = slow.createTensor();
    let worst = { max: 0, mean: 0 };
    for (const frame of sampleFrames) {
      await fast.toTensor(frame.data, a);
      await slow.toTensor(frame.data, b);
      const d = tensorDifference(a, b);
      worst = { max: Math.max(worst.max, d.max), mean: Math.max(worst.mean, d.mean) };
    }
    expect(worst.mean).toBeLessThan(2);
    expect(worst.max).toBeLessThan(24);
  });

  it('640x480 camera frames with the item in an ROI (decoded at 1/8), gray and rgb models: mean under 2, max under 24', async () => {
    const frames = await cameraFrames(sampleFrames.slice(0, 12));
    for (const spec of [model, rgbModel]) {
      const fast = new Preprocessor(spec, cameraFrameRoi);
      const slow = new Preprocessor(spec, cameraFrameRoi, undefined, { decoder: 'sharp' });
      const a = fast.createTensor();
      const b = slow.createTensor();
      for (const frame of frames) {
        await fast.toTensor(frame.data, a);
        await slow.toTensor(frame.data, b);
        const d = tensorDifference(a, b);
        expect(d.mean, `${spec.colour} ${frame.name}`).toBeLessThan(2);
        expect(d.max, `${spec.colour} ${frame.name}`).toBeLessThan(24);
      }
    }
  });

  it('raw pixels with padded rows give the tensor of the same pixels packed, and a cropped raw frame is not cropped again', async () => {
    const { data, info } = await sharp(sampleFrames[3]!.data).grayscale().raw().toBuffer({ resolveWithObject: true });
    const stride = info.width + 4;
    const padded = new Uint8Array(stride * info.height).fill(255);
    for (let y = 0; y < info.height; y++) padded.set(data.subarray(y * info.width, (y + 1) * info.width), y * stride);
    const roi = { x: 10, y: 20, width: 60, height: 50 };
    const pre = new Preprocessor(model, roi);
    const packed = pre.createTensor();
    const strided = pre.createTensor();
    await pre.toTensor({ width: info.width, height: info.height, channels: 1, stride: info.width, pixels: data, cropped: false }, packed);
    await pre.toTensor({ width: info.width, height: info.height, channels: 1, stride, pixels: padded, cropped: false }, strided);
    expect(Array.from(strided)).toEqual(Array.from(packed));

    const cut = Buffer.alloc(roi.width * roi.height);
    for (let y = 0; y < roi.height; y++) data.copy(cut, y * roi.width, (roi.y + y) * info.width + roi.x, (roi.y + y) * info.width + roi.x + roi.width);
    const cropped = pre.createTensor();
    await pre.toTensor({ width: roi.width, height: roi.height, channels: 1, stride: roi.width, pixels: cut, cropped: true }, cropped);
    // Taps at the ROI's edges read neighbouring pixels in the whole frame, not in the cut: interior values agree.
    expect(tensorDifference(cropped, packed).mean).toBeLessThan(1);
  });

  it('refuses a raw frame whose buffer is shorter than its rows', async () => {
    const pre = new Preprocessor(model);
    await expect(pre.toTensor({ width: 30, height: 30, channels: 1, stride: 32, pixels: new Uint8Array(32 * 29), cropped: true }, pre.createTensor())).rejects.toThrow(ImageError);
  });
});
