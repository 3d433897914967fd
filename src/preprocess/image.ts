import sharp, { type Sharp } from 'sharp';
import type { RawImage } from '../common/index.js';
import { checkEncoded, ImageError, imageLimitDefaults, roiOutside, type ImageLimits, type Roi } from './checks.js';
import { readImageHeader } from './size.js';

export { checkEncoded, checkRoi, ImageError, imageLimitDefaults, RoiError, roiOutside, type ImageLimits, type Roi } from './checks.js';

// A daemon decodes a new frame forever: sharp's operation cache would only grow and never hit.
sharp.cache(false);
// Frames are small; libvips threads inside one image cost more than they save. Parallelism comes
// from several frames in libuv's pool, which leaves the other cores to ONNX Runtime.
sharp.concurrency(1);

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
