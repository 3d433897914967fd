import sharp, { type Sharp } from 'sharp';
import { UserError, type RawImage } from '../common/index.js';
import { isJpegOrPng, readImageHeader } from './size.js';

// A daemon decodes a new frame forever: sharp's operation cache would only grow and never hit.
sharp.cache(false);
// Frames are small; libvips threads inside one image cost more than they save. Parallelism comes
// from several frames in libuv's pool, which leaves the other cores to ONNX Runtime.
sharp.concurrency(1);

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

/** Start a pipeline on one encoded image, cropped to the ROI when there is one; larger images than the limits are refused undecoded. */
export function open(image: Buffer, roi: Roi | undefined, limits: ImageLimits = imageLimitDefaults): Sharp {
  checkEncoded(image, limits);
  // failOn 'warning' (the default, made explicit): a truncated JPEG decodes partly grey, which
  // would look like a defect; refusing it is better than classifying it.
  const pipeline = sharp(image, { failOn: 'warning', limitInputPixels: limits.maxPixels });
  return roi ? pipeline.extract({ left: roi.x, top: roi.y, width: roi.width, height: roi.height }) : pipeline;
}

/**
 * Start a pipeline on raw pixels (a camera's frame), cropped to the ROI unless the camera cut it
 * out already. For the occasional image kept of a frame (anomaly, reference, live view), not per frame.
 */
export function openRaw(image: RawImage, roi: Roi | undefined): Sharp {
  const { width, height, channels, stride } = image;
  let pixels = Buffer.from(image.pixels.buffer, image.pixels.byteOffset, image.pixels.byteLength);
  if (stride !== width * channels) {
    const packed = Buffer.alloc(width * height * channels);
    for (let y = 0; y < height; y++) pixels.copy(packed, y * width * channels, y * stride, y * stride + width * channels);
    pixels = packed;
  }
  const pipeline = sharp(pixels, { raw: { width, height, channels } });
  if (!roi || image.cropped) return pipeline;
  if (roi.x + roi.width > width || roi.y + roi.height > height) throw roiOutside(roi, width, height);
  return pipeline.extract({ left: roi.x, top: roi.y, width: roi.width, height: roi.height });
}

/** A raw frame as a JPEG for a person to look at (the UI's live view asks for one at most every 200 ms). */
export function rawToJpeg(image: RawImage): Promise<Buffer> {
  return openRaw(image, undefined).jpeg({ quality: 85 }).toBuffer();
}

/** Turn a sharp failure into ImageError or RoiError with the reason. */
export async function explainFailure(err: unknown, image: Buffer, roi: Roi | undefined, limits: ImageLimits = imageLimitDefaults): Promise<Error> {
  if (err instanceof ImageError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const header = readImageHeader(image);
  if (message.includes('pixel limit') && header) {
    return new ImageError(`the image is ${header.width}x${header.height} pixels, more than capture.maxFramePixels (${limits.maxPixels})`, { cause: err });
  }
  if (roi && message.includes('extract_area')) {
    const { width = 0, height = 0 } = await sharp(image).metadata();
    return roiOutside(roi, width, height);
  }
  return new ImageError(message.split('\n')[0] ?? message, { cause: err });
}
