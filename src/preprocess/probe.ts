import sharp from 'sharp';

/** A gray diagonal gradient PNG of this size: an image every model should give a usable vector for (the load-time probe). */
export function probeImage(width: number, height: number): Promise<Buffer> {
  const pixels = Buffer.alloc(width * height);
  const steps = Math.max(1, width + height - 2);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) pixels[y * width + x] = Math.round((255 * (x + y)) / steps);
  return sharp(pixels, { raw: { width, height, channels: 1 } }).png().toBuffer();
}
