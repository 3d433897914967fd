import { isRawImage, type RawImage } from '../common/index.js';
import { viewableImage } from '../events/index.js';
import type { DecidedFrame } from '../pipeline/index.js';

/** What the live page shows of one decided frame; the frame itself is fetched by its seq. */
export interface LiveFrame {
  seq: number;
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
}

type Listener = (frame: LiveFrame) => void;

/** Frames kept for the page to fetch after it was told of them: a slow client still finds its frame. */
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
  /** A raw camera frame is encoded once, when a page first asks for it (`viewable`). */
  private readonly frames: { info: LiveFrame; data: Buffer | RawImage; viewable?: Promise<Buffer> }[] = [];
  private readonly listeners = new Set<Listener>();
  private pushTimer: NodeJS.Timeout | null = null;
  private readonly scores = new Float32Array(scoreCapacity);
  private scoreCount = 0;
  private scoreNext = 0;
  private day = '';

  constructor(private readonly now: () => Date = () => new Date()) {}

  readonly consume = ({ frame, decision, model }: DecidedFrame): void => {
    const info: LiveFrame = {
      seq: frame.seq,
      origin: frame.origin,
      capturedAt: frame.capturedAt,
      anomaly: decision.anomaly,
      score: decision.score,
      threshold: decision.threshold,
      label: decision.label,
      model: model.key,
      neighbours: decision.neighbours.map(({ referenceId, label, distance }) => ({ referenceId, label, distance })),
      cropped: isRawImage(frame.data) && frame.data.cropped,
    };
    this.frames.push({ info, data: frame.data });
    if (this.frames.length > keptFrames) this.frames.shift();
    this.addScore(decision.score);
    if (this.listeners.size > 0 && !this.pushTimer) {
      this.pushTimer = setTimeout(() => {
        this.pushTimer = null;
        const latest = this.latest;
        if (latest) for (const listener of this.listeners) listener(latest);
      }, pushIntervalMs);
    }
  };

  get latest(): LiveFrame | undefined {
    return this.frames.at(-1)?.info;
  }

  /** The image of a recent frame, by its seq (undefined once it is no longer kept). */
  frame(seq: number): Promise<Buffer> | undefined {
    const kept = this.frames.find((f) => f.info.seq === seq);
    if (!kept) return undefined;
    kept.viewable ??= viewableImage(kept.data);
    return kept.viewable;
  }

  /** Tells `listener` of the latest frame, at most every 200 ms; returns the unsubscribe. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
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
    this.listeners.clear();
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
