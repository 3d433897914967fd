import { isRawImage, type RawImage } from '../common/index.js';
import { explainFailure, imageLimitDefaults, open, openRaw, type ImageLimits, type Roi } from './image.js';

export interface ThumbnailOptions {
  /** Crop first, so the thumbnail shows what the model saw. */
  roi?: Roi;
  /**
   * Longest side in pixels (default 64). Keep it at least the model input size so a future model
   * can re-embed stored thumbnails. Smaller images are not enlarged.
   */
  longestSide?: number;
  /** The limits the image was accepted under (the model's frames.limits). */
  limits?: ImageLimits;
}

/** A small PNG of the frame, kept with a reference. PNG because re-embedding should not see JPEG artefacts. */
export async function thumbnail(image: Buffer | RawImage, options: ThumbnailOptions = {}): Promise<Buffer> {
  const side = options.longestSide ?? 64;
  const limits = options.limits ?? imageLimitDefaults;
  if (isRawImage(image)) return openRaw(image, options.roi).resize(side, side, { fit: 'inside', withoutEnlargement: true }).png().toBuffer();
  try {
    return await open(image, options.roi, limits)
      .resize(side, side, { fit: 'inside', withoutEnlargement: true })
      .png()
      .toBuffer();
  } catch (err) {
    throw await explainFailure(err, image, options.roi, limits);
  }
}
