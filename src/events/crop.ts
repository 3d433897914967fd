import { readImageHeader, thumbnail, type ImageLimits, type Roi } from '../preprocess/index.js';

export interface KeptImage {
  image: Buffer;
  contentType: string;
}

/**
 * The frame itself when it can be kept as it came: no ROI, a JPEG or PNG already at most
 * `longestSide` pixels (no decode, no re-encode, no call into sharp). Undefined otherwise.
 */
export function keepAsIs(frame: Buffer, roi: Roi | undefined, longestSide: number): KeptImage | undefined {
  if (roi) return undefined;
  const header = readImageHeader(frame);
  return header && Math.max(header.width, header.height) <= longestSide ? { image: frame, contentType: header.type } : undefined;
}

/**
 * The image kept with an anomaly: what the model saw (the ROI), at most `longestSide` pixels.
 * A whole frame already small enough is kept as it came; anything else becomes a PNG so
 * re-embedding it later sees no new compression artefacts.
 */
export async function anomalyImage(frame: Buffer, roi: Roi | undefined, longestSide: number, limits?: ImageLimits): Promise<KeptImage> {
  return keepAsIs(frame, roi, longestSide) ?? { image: await thumbnail(frame, { roi, longestSide, ...(limits && { limits }) }), contentType: 'image/png' };
}
