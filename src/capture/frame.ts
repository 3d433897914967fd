import type { RawImage } from '../common/index.js';

/** Which camera a frame came from: its topic levels, and the region of its frames the item lies in. */
export interface CameraIdentity {
  /** `site/line/camera`, unique among the daemon's cameras. */
  key: string;
  site: string;
  line: string;
  camera: string;
  /** Cropped from each frame before it is resized (null: the whole frame). */
  roi: { x: number; y: number; width: number; height: number } | null;
}

/** One image from a camera or a replay folder. */
export interface Frame {
  /** 1, 2, 3... per source, never reset by restarts. */
  seq: number;
  /** ms since epoch, when the frame became available to linewatch. */
  capturedAt: number;
  /**
   * Encoded JPEG or PNG (replay, MJPEG cameras), or raw pixels (a camera pipeline that crops and
   * scales to the model input itself); a raw frame is encoded only when an image of it is kept.
   */
  data: Buffer | RawImage;
  /** File name (replay) or source name (cameras). */
  origin: string;
  /** Set by the Camera that queued it; absent for frames that come from no configured camera (tests, the bench's probes). */
  camera?: CameraIdentity;
}

/**
 * Receives each frame. Replay awaits a returned promise before reading the next file, so a
 * max-rate replay runs at the consumer's pace. Cameras never wait (a live camera cannot pause;
 * a stalled pipe would only deliver stale frames later): put a FrameQueue in between.
 */
export type FrameHandler = (frame: Frame) => void | Promise<void>;

export type FrameSourceKind = 'replay' | 'gstreamer' | 'libcamera';

export type CaptureState = 'starting' | 'running' | 'restarting' | 'stopped' | 'ended' | 'failed';

/** What the splitter threw away; all counters only grow. A raw stream counts only frames and truncated ones. */
export interface JpegSplitterStats {
  /** Complete frames emitted. */
  frames: number;
  /** Frames cut short: a new SOI came before EOI, or the stream ended mid-frame. */
  truncated: number;
  /** Frames larger than maxFrameBytes. */
  oversized: number;
  /** Frames whose marker structure was invalid. */
  corrupt: number;
  /** Bytes outside any frame (garbage before an SOI). */
  skippedBytes: number;
}

/** JSON-serialisable snapshot for the daemon's status endpoint. */
export interface CaptureStatus {
  source: string;
  kind: FrameSourceKind;
  state: CaptureState;
  framesReceived: number;
  /** Frames lost inside the source (splitter drops for cameras, unreadable files for replay). */
  framesDropped: number;
  /** How many times the camera process was started again. */
  restarts: number;
  /** ms since epoch, or null before the first frame. */
  lastFrameAt: number | null;
  lastError: string | null;
  /** Camera sources only: why frames were dropped. */
  splitter?: JpegSplitterStats;
}

export interface FrameSource {
  readonly name: string;
  readonly kind: FrameSourceKind;
  /**
   * Begins delivering frames to onFrame. Rejects with a UserError when the source cannot work
   * at all (e.g. a replay folder without images); a camera process that fails to start is
   * retried in the background instead and reported through status().
   */
  start(onFrame: FrameHandler): Promise<void>;
  /** Resolves once no further onFrame call will begin (camera processes have exited). */
  stop(): Promise<void>;
  status(): CaptureStatus;
  /** Resolves when the source will deliver no more frames: a play-once replay reached its end, or stop(). */
  ended(): Promise<void>;
}
