import sharp from 'sharp';
import type { Roi } from '../preprocess/index.js';

/** Where the item sits in a generated camera frame: the ROI a technician would draw around it. */
export const cameraFrameRoi: Roi = { x: 208, y: 128, width: 224, height: 224 };
export const cameraFrameSize = { width: 640, height: 480 };

/**
 * Camera-sized frames made from the sample frames: each item enlarged 2x into the ROI of a
 * 640x480 belt (a gray, finely textured background, so the JPEGs carry the entropy data of a
 * real camera's, not of a flat fill), JPEG quality 85 as the gstreamer presets encode, or PNG.
 */
export async function cameraFrames(items: readonly { name: string; data: Buffer }[], format: 'jpeg' | 'png' = 'jpeg'): Promise<{ name: string; data: Buffer }[]> {
  const { width, height } = cameraFrameSize;
  const belt = Buffer.alloc(width * height);
  let seed = 7;
  for (let i = 0; i < belt.length; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const stripe = (Math.floor(i / width) % 24 < 2 ? -18 : 0) + ((i % width) % 40 < 1 ? 10 : 0);
    belt[i] = 96 + stripe + ((seed >>> 16) % 13) - 6;
  }
  const background = await sharp(belt, { raw: { width, height, channels: 1 } }).toColourspace('srgb').png().toBuffer();
  const roi = cameraFrameRoi;
  return Promise.all(
    items.map(async ({ name, data }) => {
      const item = await sharp(data).resize(roi.width, roi.height, { fit: 'fill' }).toBuffer();
      const scene = sharp(background).composite([{ input: item, left: roi.x, top: roi.y }]);
      // PNG: the same scene without JPEG loss, for a camera that never encodes (the raw path).
      const frame = await (format === 'jpeg' ? scene.jpeg({ quality: 85 }) : scene.png()).toBuffer();
      return { name, data: frame };
    }),
  );
}
