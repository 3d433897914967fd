/** Width and height from an encoded image's header, without decoding it; undefined when not found. */
export interface ImageHeader {
  type: 'image/jpeg' | 'image/png';
  width: number;
  height: number;
}

const pngSignature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * Cameras give JPEG (MJPEG, jpegenc) and the replay, enroll and classify paths take .jpg/.png. Every
 * other loader sharp has (SVG through librsvg, TIFF, GIF, WebP, HEIF) is only a way in for a hostile
 * file, so it is refused by its first bytes before sharp sees it. Checked per call rather than with
 * sharp.block(), which is process-wide and would also stop the eval chart (rendered from SVG).
 */
export function isJpegOrPng(image: Buffer): boolean {
  return (image.length >= 3 && image[0] === 0xff && image[1] === 0xd8 && image[2] === 0xff) || image.subarray(0, 8).equals(pngSignature);
}

/**
 * Reads a JPEG's frame header (SOFn) or a PNG's IHDR. A few bytes read where sharp would cost a
 * call through libuv's pool (about 1.5 ms here): the daemon asks this for every anomaly it keeps.
 */
export function readImageHeader(image: Buffer): ImageHeader | undefined {
  if (image.length >= 24 && image.subarray(0, 8).equals(pngSignature) && image.toString('latin1', 12, 16) === 'IHDR') {
    return { type: 'image/png', width: image.readUInt32BE(16), height: image.readUInt32BE(20) };
  }
  if (image.length < 4 || image[0] !== 0xff || image[1] !== 0xd8) return undefined;
  let at = 2;
  while (at + 9 < image.length) {
    if (image[at] !== 0xff) return undefined;
    const marker = image[at + 1]!;
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    const length = image.readUInt16BE(at + 2);
    // SOF0..SOF15 carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { type: 'image/jpeg', height: image.readUInt16BE(at + 5), width: image.readUInt16BE(at + 7) };
    }
    if (marker === 0xda || length < 2) return undefined; // scan data began before any frame header
    at += 2 + length;
  }
  return undefined;
}
