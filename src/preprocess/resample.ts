import type { RawImage } from '../common/index.js';

/** A rectangle in source pixels; fractional where the image was decoded at 1/2..1/8 scale. */
export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** What to write: the model's input size and channels, and per channel v * scale + offset of a pixel value v. */
export interface TensorLayout {
  width: number;
  height: number;
  channels: 1 | 3;
  scale: Float32Array;
  offset: Float32Array;
}

interface Taps {
  /** First source index of each output index. */
  first: Int32Array;
  count: Int32Array;
  /** count[i] weights from i * stride on. */
  weights: Float32Array;
  stride: number;
}

/**
 * Pillow's BILINEAR resize (a triangle filter widened by the reduction factor, so a reduction
 * averages every source pixel: no aliasing), the filter the training pipeline resizes with.
 * Taps may reach outside the box into the rest of the image, as Pillow's `box` does.
 */
/**
 * ITU-R 601-2 luma with the integer rounding of Pillow's convert('L'), so colour frames turn gray
 * exactly as in a Python training pipeline (libvips' own b-w is linear-light).
 */
export function lumaOf(r: number, g: number, b: number): number {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
}

function taps(start: number, length: number, full: number, out: number): Taps {
  const scale = length / out;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(out);
  const count = new Int32Array(out);
  const weights = new Float32Array(out * stride);
  for (let i = 0; i < out; i++) {
    const centre = start + (i + 0.5) * scale;
    const min = Math.max(0, Math.trunc(centre - support + 0.5));
    const max = Math.min(full, Math.trunc(centre + support + 0.5));
    let total = 0;
    for (let x = min; x < max; x++) {
      const w = Math.max(0, 1 - Math.abs((x - centre + 0.5) / filterScale));
      weights[i * stride + x - min] = w;
      total += w;
    }
    const n = max - min;
    if (total > 0) for (let k = 0; k < n; k++) weights[i * stride + k]! /= total;
    first[i] = min;
    count[i] = n;
  }
  return { first, count, weights, stride };
}

/**
 * Crops `box` out of `image`, resizes it to the layout's size and writes the normalised CHW
 * floats into `out`. A gray layout from RGB pixels takes Pillow's convert('L') luma of each pixel
 * first (ITU-R 601-2 with its integer rounding), as the training pipeline does before resizing.
 */
export function resampleInto(image: RawImage, box: Box, layout: TensorLayout, out: Float32Array): void {
  const { width, height } = layout;
  const h = taps(box.x, box.width, image.width, width);
  const v = taps(box.y, box.height, image.height, height);
  const inChannels = image.channels;
  const channels = layout.channels === 1 ? 1 : inChannels; // gray pixels for an RGB model are repeated below
  const luma = layout.channels === 1 && inChannels === 3;
  const rowFirst = v.first[0]!;
  const rowEnd = v.first[height - 1]! + v.count[height - 1]!;
  // Horizontal pass over the rows the vertical taps read, then the vertical pass.
  const across = new Float32Array((rowEnd - rowFirst) * width * channels);
  const { pixels, stride } = image;
  for (let row = rowFirst; row < rowEnd; row++) {
    const base = row * stride;
    const to = (row - rowFirst) * width * channels;
    for (let x = 0; x < width; x++) {
      const first = h.first[x]!;
      const n = h.count[x]!;
      const w = x * h.stride;
      if (luma) {
        let sum = 0;
        for (let k = 0, p = base + first * 3; k < n; k++, p += 3) {
          sum += h.weights[w + k]! * lumaOf(pixels[p]!, pixels[p + 1]!, pixels[p + 2]!);
        }
        across[to + x] = sum;
      } else if (channels === 1) {
        let sum = 0;
        for (let k = 0, p = base + first; k < n; k++, p++) sum += h.weights[w + k]! * pixels[p]!;
        across[to + x] = sum;
      } else {
        let r = 0;
        let g = 0;
        let b = 0;
        for (let k = 0, p = base + first * 3; k < n; k++, p += 3) {
          const weight = h.weights[w + k]!;
          r += weight * pixels[p]!;
          g += weight * pixels[p + 1]!;
          b += weight * pixels[p + 2]!;
        }
        const o = to + x * 3;
        across[o] = r;
        across[o + 1] = g;
        across[o + 2] = b;
      }
    }
  }
  const plane = width * height;
  const { scale, offset } = layout;
  for (let y = 0; y < height; y++) {
    const first = v.first[y]! - rowFirst;
    const n = v.count[y]!;
    const w = y * v.stride;
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let k = 0, p = (first * width + x) * channels + c; k < n; k++, p += width * channels) sum += v.weights[w + k]! * across[p]!;
        const value = sum < 0 ? 0 : sum > 255 ? 255 : sum;
        if (layout.channels === channels) {
          out[c * plane + y * width + x] = value * scale[c]! + offset[c]!;
        } else {
          for (let lc = 0; lc < layout.channels; lc++) out[lc * plane + y * width + x] = value * scale[lc]! + offset[lc]!;
        }
      }
    }
  }
}
