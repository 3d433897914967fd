import { deflateSync } from 'node:zlib';
import type { RawImage } from '../common/index.js';

/**
 * A raw frame as a PNG, encoded on the calling thread: for the small frames a camera pipeline
 * hands over at the model's size, zlib costs microseconds, while a round trip through sharp's
 * thread pool costs a turn of a busy event loop per image.
 */
export function rawToPng(image: RawImage): Buffer {
  const { width, height, channels, stride, pixels } = image;
  const row = width * channels;
  // Each row: filter type 0 (none), then its pixels without GStreamer's padding.
  const scanlines = Buffer.alloc((row + 1) * height);
  for (let y = 0; y < height; y++) scanlines.set(pixels.subarray(y * stride, y * stride + row), y * (row + 1) + 1);
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bits per sample
  header[9] = channels === 1 ? 0 : 2; // gray or RGB
  return Buffer.concat([signature, chunk('IHDR', header), chunk('IDAT', deflateSync(scanlines)), chunk('IEND', Buffer.alloc(0))]);
}

const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** zlib.crc32 arrived in Node 20.15; the engines field allows 20.9. */
const crcTable = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = crcTable[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
