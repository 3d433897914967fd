import { isRawImage, type RawImage } from '../common/index.js';
import { viewableImage } from '../events/index.js';
import type { DecidedFrame } from '../pipeline/index.js';

/** What the live page shows of one decided frame; the frame itself is fetched by its id. */
export interface LiveFrame {
  /** The view's own number for the frame, its image's address (`/ui/frames/<id>`): seqs repeat across cameras. */
  id: number;
  seq: number;
  /** The camera's `site/line/camera`; null for a frame of no configured camera. */
  camera: string | null;
  origin: string;
  capturedAt: number;
  anomaly: boolean;
  score: number;
  threshold: number;
  label: string;
  model: string;
  neighbours: { referenceId: number; label: string; distance: number }[];
  /** The frame is the ROI already (a raw camera frame): the page draws no ROI box on it. */
  cropped: boolean;
  /** Its camera's ROI, in the frame's pixels (null: the whole frame). */
  roi: { x: number; y: number; width: number; height: number } | null;
}

type Listener = (frame: LiveFrame) => void;

/** A page's stream: one camera's frames, or (camera undefined) every camera's. */
interface Subscriber {
  camera: string | undefined;
  listener: Listener;
  /** The id of the frame it was last told of. */
  sent: number;
}

/** Frames kept per camera for the page to fetch after it was told of them: a slow client still finds its frame. */
const keptFrames = 8;
/** Today's scores kept for the threshold page (a float each): a day at 2 frames/s fits, faster lines keep the latest. */
const scoreCapacity = 200_000;
/** Bins of the score histogram the threshold page counts flagged frames from. */
export const histogramBins = 1000;
/** At most this many frames per second go to each page: a browser on a Pi's LAN needs no more. */
const pushIntervalMs = 200;

/**
 * The web UI's decision consumer: the latest frames (for the live page, pushed by server-sent
 * events) and a bounded ring of today's decision scores (for the threshold page). Cheap per frame:
 * it keeps references, copies nothing, and pushes at most every 200 ms.
 */
export class LiveView {
  /** By camera key ('' for none). A raw camera frame is encoded once, when a page first asks for it (`viewable`). */
  private readonly frames = new Map<string, { info: LiveFrame; data: Buffer | RawImage; viewable?: Promise<Buffer> }[]>();
  private newest: LiveFrame | undefined;
  private nextId = 1;
  private readonly subscribers = new Set<Subscriber>();
  private pushTimer: NodeJS.Timeout | null = null;
  private readonly scores = new Float32Array(scoreCapacity);
  private scoreCount = 0;
  private scoreNext = 0;
  private day = '';

  constructor(private readonly now: () => Date = () => new Date()) {}

  readonly consume = ({ frame, decision, model }: DecidedFrame): void => {
    const info: LiveFrame = {
      id: this.nextId++,
      seq: frame.seq,
      camera: frame.camera?.key ?? null,
      origin: frame.origin,
      capturedAt: frame.capturedAt,
      anomaly: decision.anomaly,
      score: decision.score,
      threshold: decision.threshold,
      label: decision.label,
      model: model.key,
      neighbours: decision.neighbours.map(({ referenceId, label, distance }) => ({ referenceId, label, distance })),
      cropped: isRawImage(frame.data) && frame.data.cropped,
      roi: frame.camera?.roi ?? null,
    };
    const key = info.camera ?? '';
    let kept = this.frames.get(key);
    if (!kept) this.frames.set(key, (kept = []));
    kept.push({ info, data: frame.data });
    if (kept.length > keptFrames) kept.shift();
    this.newest = info;
    this.addScore(decision.score);
    if (this.subscribers.size > 0 && !this.pushTimer) {
      this.pushTimer = setTimeout(() => {
        this.pushTimer = null;
        for (const s of this.subscribers) {
          const latest = this.latest(s.camera);
          if (!latest || latest.id === s.sent) continue;
          s.sent = latest.id;
          s.listener(latest);
        }
      }, pushIntervalMs);
    }
  };

  /** The latest frame of a camera (by its `site/line/camera`), or of any camera. */
  latest(camera?: string): LiveFrame | undefined {
    return camera === undefined ? this.newest : this.frames.get(camera)?.at(-1)?.info;
  }

  /** The image of a recent frame, by its id (undefined once it is no longer kept). */
  frame(id: number): Promise<Buffer> | undefined {
    let kept;
    for (const frames of this.frames.values()) kept ??= frames.find((f) => f.info.id === id);
    if (!kept) return undefined;
    kept.viewable ??= viewableImage(kept.data);
    return kept.viewable;
  }

  /** Tells `listener` of the latest frame of `camera` (or of any camera), at most every 200 ms; returns the unsubscribe. */
  subscribe(listener: Listener, camera?: string): () => void {
    const subscriber: Subscriber = { camera, listener, sent: 0 };
    this.subscribers.add(subscriber);
    return () => this.subscribers.delete(subscriber);
  }

  /** Today's scores as counts in `histogramBins` equal bins over [0, 1] (the last bin holds 1). */
  todaysScores(): { frames: number; histogram: number[] } {
    this.rollDay();
    const histogram = new Array<number>(histogramBins).fill(0);
    for (let i = 0; i < this.scoreCount; i++) histogram[Math.min(histogramBins - 1, Math.floor(this.scores[i]! * histogramBins))]! += 1;
    return { frames: this.scoreCount, histogram };
  }

  close(): void {
    if (this.pushTimer) clearTimeout(this.pushTimer);
    this.pushTimer = null;
    this.subscribers.clear();
  }

  private addScore(score: number): void {
    this.rollDay();
    this.scores[this.scoreNext] = score;
    this.scoreNext = (this.scoreNext + 1) % scoreCapacity;
    this.scoreCount = Math.min(this.scoreCount + 1, scoreCapacity);
  }

  /** "Today" is the device's local day: at midnight the ring starts empty. */
  private rollDay(): void {
    const now = this.now();
    const day = `${now.getFullYear()}-${now.getMonth()}-${now.getDate()}`;
    if (day === this.day) return;
    this.day = day;
    this.scoreCount = 0;
    this.scoreNext = 0;
  }
}
