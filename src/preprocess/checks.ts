import { UserError } from '../common/index.js';
import { isJpegOrPng } from './size.js';

// Without sharp: a decode thread (decode-worker.ts) loads this, and sharp would add ~0.3 s to its start.

/** A frame that cannot be decoded (corrupt, truncated, not JPEG/PNG). The daemon skips and counts it. */
export class ImageError extends UserError {
  constructor(
    /** Why, without the 'cannot decode image' prefix. */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot decode image: ${reason}`, 'the frame is corrupt or not a JPEG/PNG; it is skipped', options);
  }
}

/** How large an encoded image may be; beyond either limit it is refused before it is decoded. */
export interface ImageLimits {
  /** Bytes of the encoded image (capture.maxFrameBytes). */
  maxBytes: number;
  /** Width x height (capture.maxFramePixels): a small PNG can declare 16000x16000 and take gigabytes to decode. */
  maxPixels: number;
}

/** Sized for cameras: 50 MP is above the largest common machine-vision sensors, far below what a bomb declares. */
export const imageLimitDefaults: ImageLimits = { maxBytes: 8 * 1024 * 1024, maxPixels: 50_000_000 };

/** The ROI does not fit inside the frame: a configuration problem that hits every frame. */
export class RoiError extends UserError {}

/** Region of interest in pixels of the stored image (EXIF orientation is not applied). */
export interface Roi {
  x: number;
  y: number;
  width: number;
  height: number;
}

export function checkRoi(roi: Roi): void {
  for (const key of ['x', 'y', 'width', 'height'] as const) {
    const value = roi[key];
    const min = key === 'x' || key === 'y' ? 0 : 1;
    if (!Number.isInteger(value) || value < min) {
      throw new RoiError(
        `roi.${key} is ${String(value)}: it must be an integer >= ${min}`,
        'give the region of interest as whole pixels { x, y, width, height }',
      );
    }
  }
}

export function roiOutside(roi: Roi, width: number, height: number): RoiError {
  return new RoiError(
    `roi { x: ${roi.x}, y: ${roi.y}, width: ${roi.width}, height: ${roi.height} } lies outside the ${width}x${height} image`,
    `keep x + width <= ${width} and y + height <= ${height}, or remove the roi`,
  );
}

/** The size limits and the encoded formats sharp may see, checked before anything decodes. */
export function checkEncoded(image: Buffer, limits: ImageLimits): void {
  if (image.length > limits.maxBytes) {
    throw new ImageError(`the image is ${image.length} bytes, more than capture.maxFrameBytes (${limits.maxBytes})`);
  }
  if (!isJpegOrPng(image)) {
    throw new ImageError(`it is neither a JPEG nor a PNG (it begins ${JSON.stringify(image.subarray(0, 8).toString('latin1'))})`);
  }
}
