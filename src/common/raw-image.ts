/**
 * Pixels as they lie in memory: 8-bit gray or interleaved RGB, rows `stride` bytes apart. Shared
 * by capture (a camera that hands over raw frames) and preprocess (which reads them without a
 * decode), which may not import each other.
 */
export interface RawImage {
  width: number;
  height: number;
  channels: 1 | 3;
  /** Bytes from one row to the next (GStreamer pads rows to a multiple of 4). */
  stride: number;
  pixels: Uint8Array;
  /** The source already cut the ROI out (a GStreamer `videocrop`): preprocess must not crop again. */
  cropped: boolean;
}

export function isRawImage(image: Uint8Array | RawImage): image is RawImage {
  return !(image instanceof Uint8Array);
}
