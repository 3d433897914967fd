import type { JpegSplitterStats } from './frame.js';

/**
 * Finds JPEG frames in an MJPEG byte stream (a pipe has no length headers).
 *
 * Rather than searching for the first FFD9, it walks the JPEG structure: marker segments are
 * skipped by their declared length (so an EXIF thumbnail's own SOI/EOI inside APP1 is never
 * seen), and only after SOS does it scan entropy-coded data, where FF00 stuffing and RSTn are
 * data and the next real marker ends the scan. Input chunks are kept as slices and joined once
 * per frame, so the cost is linear in the stream length.
 */
export const defaultMaxFrameBytes = 16 * 1024 * 1024;

const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;
const TEM = 0x01;

const enum State {
  Seek, // outside a frame, looking for FF
  SeekMarker, // outside a frame, after FF: D8 starts a frame
  Marker, // in the header, expecting FF
  MarkerCode, // in the header, after FF
  LengthHigh,
  LengthLow,
  Segment, // skipping a marker segment's payload
  Entropy, // scan data, looking for FF
  EntropyMarker, // scan data, after FF
}

const soiBytes = Buffer.from([0xff, SOI]);

function isRestart(code: number): boolean {
  return code >= 0xd0 && code <= 0xd7;
}

export class JpegSplitter {
  readonly stats: JpegSplitterStats = { frames: 0, truncated: 0, oversized: 0, corrupt: 0, skippedBytes: 0 };

  private state = State.Seek;
  /** Earlier chunks' share of the current frame (starting with a synthetic SOI). */
  private parts: Buffer[] = [];
  private partsBytes = 0;
  /** Current frame already exceeded maxFrameBytes: keep walking it, but store nothing. */
  private oversized = false;
  private segmentCode = 0;
  private lengthHigh = 0;
  private segmentRemaining = 0;

  constructor(readonly maxFrameBytes = defaultMaxFrameBytes) {}

  get framesDropped(): number {
    return this.stats.truncated + this.stats.oversized + this.stats.corrupt;
  }

  /** Feeds the next chunk of the stream; returns the frames it completed, in order. */
  push(chunk: Buffer): Buffer[] {
    const frames: Buffer[] = [];
    const n = chunk.length;
    // Where the current frame's bytes begin in this chunk (-1: not in a frame).
    let start = this.inFrame() ? 0 : -1;
    let i = 0;
    while (i < n) {
      switch (this.state) {
        case State.Seek: {
          const ff = chunk.indexOf(0xff, i);
          const end = ff < 0 ? n : ff;
          this.stats.skippedBytes += end - i;
          i = ff < 0 ? n : ff + 1;
          if (ff >= 0) this.state = State.SeekMarker;
          break;
        }
        case State.SeekMarker: {
          const code = chunk[i++]!;
          if (code === SOI) {
            this.beginFrame();
            start = i;
          } else if (code === 0xff) {
            this.stats.skippedBytes += 1;
          } else {
            this.stats.skippedBytes += 2;
            this.state = State.Seek;
          }
          break;
        }
        case State.Marker: {
          if (chunk[i++] === 0xff) {
            this.state = State.MarkerCode;
          } else {
            this.abandon('corrupt');
            start = -1;
          }
          break;
        }
        case State.MarkerCode:
        case State.EntropyMarker: {
          const code = chunk[i++]!;
          const inScan = this.state === State.EntropyMarker;
          if (code === 0xff) break; // fill byte before a marker
          if (code === EOI) {
            const frame = this.finishFrame(chunk.subarray(start, i));
            if (frame) frames.push(frame);
            start = -1;
          } else if (code === SOI) {
            this.abandon('truncated');
            this.beginFrame();
            start = i;
          } else if (inScan && (code === 0x00 || isRestart(code))) {
            this.state = State.Entropy; // stuffed FF or restart marker: still scan data
          } else if (code === 0x00) {
            this.abandon('corrupt');
            start = -1;
          } else if (isRestart(code) || code === TEM) {
            this.state = State.Marker; // standalone marker, no length
          } else {
            // A segment; inside a scan this is e.g. DHT/SOS between progressive scans.
            this.segmentCode = code;
            this.state = State.LengthHigh;
          }
          break;
        }
        case State.LengthHigh:
          this.lengthHigh = chunk[i++]!;
          this.state = State.LengthLow;
          break;
        case State.LengthLow: {
          const length = (this.lengthHigh << 8) | chunk[i++]!;
          if (length < 2) {
            this.abandon('corrupt');
            start = -1;
          } else {
            this.segmentRemaining = length - 2;
            this.state = State.Segment;
            if (this.segmentRemaining === 0) this.endSegment();
          }
          break;
        }
        case State.Segment: {
          const step = Math.min(this.segmentRemaining, n - i);
          i += step;
          this.segmentRemaining -= step;
          if (this.segmentRemaining === 0) this.endSegment();
          break;
        }
        case State.Entropy: {
          const ff = chunk.indexOf(0xff, i);
          if (ff < 0) {
            i = n;
          } else {
            i = ff + 1;
            this.state = State.EntropyMarker;
          }
          break;
        }
      }
    }
    if (start >= 0 && this.inFrame()) this.keep(chunk.subarray(start));
    return frames;
  }

  /** The stream ended or restarted: a partial frame counts as truncated. */
  reset(): void {
    if (this.inFrame()) this.abandon('truncated');
    else if (this.state === State.SeekMarker) this.stats.skippedBytes += 1;
    this.state = State.Seek;
  }

  private inFrame(): boolean {
    return this.state !== State.Seek && this.state !== State.SeekMarker;
  }

  private beginFrame(): void {
    this.parts = [soiBytes];
    this.partsBytes = soiBytes.length;
    this.oversized = false;
    this.state = State.Marker;
  }

  private endSegment(): void {
    this.state = this.segmentCode === SOS ? State.Entropy : State.Marker;
  }

  private keep(piece: Buffer): void {
    if (this.oversized) return;
    this.partsBytes += piece.length;
    if (this.partsBytes > this.maxFrameBytes) {
      this.oversized = true;
      this.parts = [];
    } else {
      this.parts.push(piece);
    }
  }

  private finishFrame(last: Buffer): Buffer | undefined {
    const total = this.partsBytes + last.length;
    if (this.oversized || total > this.maxFrameBytes) {
      this.abandon('oversized');
      return undefined;
    }
    this.parts.push(last);
    const frame = Buffer.concat(this.parts, total);
    this.clear();
    this.stats.frames += 1;
    return frame;
  }

  private abandon(reason: 'truncated' | 'corrupt' | 'oversized'): void {
    this.stats[this.oversized ? 'oversized' : reason] += 1;
    this.clear();
  }

  private clear(): void {
    this.parts = [];
    this.partsBytes = 0;
    this.oversized = false;
    this.state = State.Seek;
  }
}
