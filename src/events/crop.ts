import { isRawImage, type RawImage } from '../common/index.js';
import { rawToJpeg, rawToPng, readImageHeader, thumbnail, type ImageLimits, type Roi } from '../preprocess/index.js';

export interface KeptImage {
  image: Buffer;
  contentType: string;
}

/**
 * The frame kept without a call into sharp, when it is already the ROI (or there is none) and at
 * most `longestSide` pixels: a JPEG or PNG as it came, a raw frame as a PNG made here. Undefined
 * otherwise.
 */
export function keepAsIs(frame: Buffer | RawImage, roi: Roi | undefined, longestSide: number): KeptImage | undefined {
  if (isRawImage(frame)) {
    const small = (frame.cropped || !roi) && Math.max(frame.width, frame.height) <= longestSide;
    return small ? { image: rawToPng(frame), contentType: 'image/png' } : undefined;
  }
  if (roi) return undefined;
  const header = readImageHeader(frame);
  return header && Math.max(header.width, header.height) <= longestSide ? { image: frame, contentType: header.type } : undefined;
}

/**
 * The image kept with an anomaly: what the model saw (the ROI), at most `longestSide` pixels.
 * A whole frame already small enough is kept as it came; anything else becomes a PNG so
 * re-embedding it later sees no new compression artefacts.
 */
export async function anomalyImage(frame: Buffer | RawImage, roi: Roi | undefined, longestSide: number, limits?: ImageLimits): Promise<KeptImage> {
  return keepAsIs(frame, roi, longestSide) ?? { image: await thumbnail(frame, { roi, longestSide, ...(limits && { limits }) }), contentType: 'image/png' };
}

/** A frame as a person's browser can show it: as it came, or a raw camera frame encoded to JPEG (only when asked for). */
export async function viewableImage(frame: Buffer | RawImage): Promise<Buffer> {
  return isRawImage(frame) ? rawToJpeg(frame) : frame;
}
