import type { RawImage } from '../common/index.js';
import type { JpegSplitterStats } from './frame.js';

/** The layout of every frame on a raw video pipe: GStreamer's default, rows padded to 4 bytes. */
export interface RawLayout {
  width: number;
  height: number;
  channels: 1 | 3;
  /** The source cut the ROI out already (videocrop / nvvidconv): preprocess must not crop again. */
  cropped: boolean;
}

/** Bytes per row of a raw GStreamer frame: GRAY8 and RGB rows are padded to a multiple of 4. */
export function rawStride(layout: Pick<RawLayout, 'width' | 'channels'>): number {
  return Math.ceil((layout.width * layout.channels) / 4) * 4;
}

/**
 * Cuts a raw video stream into frames. A pipe has no headers, but every frame is the same
 * stride x height bytes, so a frame ends exactly where the byte count says; reads arrive in
 * chunks of any size (a short read ends mid-frame, a long one holds several frames).
 */
export class RawFrameSplitter {
  readonly stats: JpegSplitterStats = { frames: 0, truncated: 0, oversized: 0, corrupt: 0, skippedBytes: 0 };
  readonly frameBytes: number;
  private readonly stride: number;
  /** The frame being filled, and how much of it is. */
  private pending: Buffer | undefined;
  private filled = 0;

  constructor(private readonly layout: RawLayout) {
    this.stride = rawStride(layout);
    this.frameBytes = this.stride * layout.height;
  }

  get framesDropped(): number {
    return this.stats.truncated;
  }

  /** Feeds the next chunk of the stream; returns the frames it completed, in order. */
  push(chunk: Buffer): RawImage[] {
    const frames: RawImage[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.filled === 0 && chunk.length - at >= this.frameBytes) {
        // A whole frame inside the chunk: a view, no copy (the chunk is not reused by the stream).
        frames.push(this.frame(chunk.subarray(at, at + this.frameBytes)));
        at += this.frameBytes;
        continue;
      }
      this.pending ??= Buffer.allocUnsafe(this.frameBytes);
      const step = Math.min(this.frameBytes - this.filled, chunk.length - at);
      chunk.copy(this.pending, this.filled, at, at + step);
      this.filled += step;
      at += step;
      if (this.filled === this.frameBytes) {
        frames.push(this.frame(this.pending));
        this.pending = undefined;
        this.filled = 0;
      }
    }
    return frames;
  }

  /** The stream ended or restarted: a frame cut short is dropped and counted as truncated. */
  reset(): void {
    if (this.filled > 0) this.stats.truncated += 1;
    this.pending = undefined;
    this.filled = 0;
  }

  private frame(pixels: Buffer): RawImage {
    this.stats.frames += 1;
    const { width, height, channels, cropped } = this.layout;
    return { width, height, channels, stride: this.stride, pixels, cropped };
  }
}
