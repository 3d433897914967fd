import sharp from 'sharp';
import { thumbnail, type Roi } from '../preprocess/index.js';

/** Content type of an encoded JPEG or PNG, from its signature; undefined for anything else. */
function encodedType(frame: Buffer): string | undefined {
  if (frame[0] === 0xff && frame[1] === 0xd8 && frame[2] === 0xff) return 'image/jpeg';
  if (frame.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png';
  return undefined;
}

/**
 * The image kept with an anomaly: what the model saw (the ROI), at most `longestSide` pixels.
 * A whole frame already small enough is kept as it came (no decode, no re-encode); anything else
 * becomes a PNG so re-embedding it later sees no new compression artefacts.
 */
export async function anomalyImage(
  frame: Buffer,
  roi: Roi | undefined,
  longestSide: number,
): Promise<{ image: Buffer; contentType: string }> {
  const type = roi ? undefined : encodedType(frame);
  if (type) {
    // A header read only. If it fails, thumbnail() below reports why the frame cannot be decoded.
    const { width, height } = await sharp(frame).metadata().catch(() => ({ width: undefined, height: undefined }));
    if (width !== undefined && height !== undefined && Math.max(width, height) <= longestSide) {
      return { image: frame, contentType: type };
    }
  }
  return { image: await thumbnail(frame, { roi, longestSide }), contentType: 'image/png' };
}
