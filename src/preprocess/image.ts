import sharp, { type Sharp } from 'sharp';
import { UserError } from '../common/index.js';

// A daemon decodes a new frame forever: sharp's operation cache would only grow and never hit.
sharp.cache(false);
// Frames are small; libvips threads inside one image cost more than they save. Parallelism comes
// from several frames in libuv's pool, which leaves the other cores to ONNX Runtime.
sharp.concurrency(1);

/** A frame that cannot be decoded (corrupt, truncated, not JPEG/PNG). The daemon skips and counts it. */
export class ImageError extends UserError {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(`cannot decode image: ${reason}`, 'the frame is corrupt or not a JPEG/PNG; it is skipped', options);
  }
}

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

/** Start a pipeline on one encoded image, cropped to the ROI when there is one. */
export function open(image: Buffer, roi: Roi | undefined): Sharp {
  // failOn 'warning' (the default, made explicit): a truncated JPEG decodes partly grey, which
  // would look like a defect; refusing it is better than classifying it.
  const pipeline = sharp(image, { failOn: 'warning' });
  return roi ? pipeline.extract({ left: roi.x, top: roi.y, width: roi.width, height: roi.height }) : pipeline;
}

/** Turn a sharp failure into ImageError or RoiError with the reason. */
export async function explainFailure(err: unknown, image: Buffer, roi: Roi | undefined): Promise<Error> {
  const message = err instanceof Error ? err.message : String(err);
  if (roi && message.includes('extract_area')) {
    const { width, height } = await sharp(image).metadata();
    return new RoiError(
      `roi { x: ${roi.x}, y: ${roi.y}, width: ${roi.width}, height: ${roi.height} } lies outside the ${width}x${height} image`,
      `keep x + width <= ${width} and y + height <= ${height}, or remove the roi`,
    );
  }
  return new ImageError(message.split('\n')[0] ?? message, { cause: err });
}
