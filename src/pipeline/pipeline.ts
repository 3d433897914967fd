import { addCount, errorText, type Logger } from '../common/index.js';
import type { Frame, FrameFeed } from '../capture/index.js';
import type { Decision } from '../knn/index.js';
import type { ModelRuntime, ModelSource } from '../models/index.js';
import { DecodeThreadError, ImageError, RoiError, type Roi } from '../preprocess/index.js';

export interface PipelineCounters {
  /** Frames that went through preprocess, encoder and classifier. */
  classified: number;
  good: number;
  anomalies: number;
  anomaliesByLabel: Map<string, number>;
  /** Frames that could not be decoded (corrupt, truncated): skipped. */
  invalidFrames: number;
  /** Frames that could not be classified because no reference is enrolled yet. */
  unclassified: number;
  /** Frames lost to an inference failure (a worker crash, say). */
  failed: number;
  /** ms since epoch of the last decision; the watchdog and health check read it. */
  lastDecisionAt: number | null;
}

/** One camera's share of the counters (status.cameras[], the metrics' camera label). */
export type CameraCounters = Pick<PipelineCounters, 'classified' | 'good' | 'anomalies' | 'invalidFrames' | 'unclassified' | 'failed'>;
type Counted = keyof CameraCounters;

/** The region of a frame the item lies in: its camera's ROI, or the model's for a frame of no camera. */
export function roiOf(frame: Frame, model: ModelRuntime): Roi | undefined {
  return frame.camera ? (frame.camera.roi ?? undefined) : model.frames.roi;
}

/** One decided frame, as every consumer sees it. */
export interface DecidedFrame {
  frame: Frame;
  /** The item's embedding (L2-normalised), so consumers can keep or compare it without embedding again. */
  vector: Float32Array;
  decision: Decision;
  /** The runtime that decided it, whole: no frame is decided by a mix of models. */
  model: ModelRuntime;
}

/** Told of every decision, in frame order: the event recorder, learning, the UI, Sparkplug... */
export type DecisionConsumer = (decided: DecidedFrame) => void;


export type PipelineStage = 'preprocess' | 'inference' | 'classify';
/** Told how long each stage took for a frame (the metrics' latency histograms). */
export type StageObserver = (stage: PipelineStage, seconds: number) => void;

/**
 * Takes frames from the queue and runs preprocess -> encoder -> classifier with several frames in
 * flight, so sharp's decoding of one frame overlaps inference of others and the encoder can batch.
 * Decisions are handed on strictly in frame order, whatever order they finish in.
 */
export class Pipeline {
  readonly counters: PipelineCounters = {
    classified: 0,
    good: 0,
    anomalies: 0,
    anomaliesByLabel: new Map(),
    invalidFrames: 0,
    unclassified: 0,
    failed: 0,
    lastDecisionAt: null,
  };
  /** Why frames are not being classified right now, for status; null while all is well. */
  problem: string | null = null;
  private tail: Promise<void> = Promise.resolve();
  private lastWarning = new Map<string, number>();
  private readonly consumers = new Set<DecisionConsumer>();
  /** Per camera key; frames of no camera count only in the totals. */
  private readonly byCamera = new Map<string, CameraCounters>();

  constructor(
    private readonly feed: FrameFeed,
    private readonly models: ModelSource,
    private readonly log: Logger,
    private readonly inFlight: number,
    private readonly observe: StageObserver = () => {},
  ) {}

  /** Adds a consumer of decisions; returns a remove. A consumer that throws is logged and skipped, never stops the line. */
  addConsumer(consumer: DecisionConsumer): () => void {
    this.consumers.add(consumer);
    return () => this.consumers.delete(consumer);
  }

  /** A camera's counts as they are now (zero before its first frame). */
  cameraCounters(key: string): CameraCounters {
    const counts = this.byCamera.get(key);
    return counts ? { ...counts } : { classified: 0, good: 0, anomalies: 0, invalidFrames: 0, unclassified: 0, failed: 0 };
  }

  /** Forgets a camera's counts (a camera removed by a reload). */
  forgetCamera(key: string): void {
    this.byCamera.delete(key);
  }

  /** Runs until the feed has ended and every frame taken from it is decided. */
  async run(): Promise<void> {
    const slots = Array.from({ length: this.inFlight }, () => this.slot());
    await Promise.all(slots);
    await this.tail;
  }

  private async slot(): Promise<void> {
    // Each slot reuses one tensor; a model with another input size gets a new one.
    let tensor: Float32Array = new Float32Array(0);
    for (;;) {
      const [frame] = await this.feed.take(1);
      if (!frame) return;
      // Claim this frame's place in the output order before any await.
      const previous = this.tail;
      let release!: () => void;
      this.tail = new Promise((resolve) => (release = resolve));
      const lease = this.models.acquire();
      let outcome: 'decided' | 'failed' = 'decided';
      try {
        if (tensor.length !== lease.runtime.frames.length) tensor = lease.runtime.frames.createTensor();
        const decided = await this.decide(frame, tensor, lease.runtime);
        if (decided === 'failed') outcome = 'failed';
        await previous;
        if (decided !== null && decided !== 'failed') this.deliver(decided);
      } finally {
        lease.release(outcome);
        release();
      }
    }
  }

  private async decide(frame: Frame, tensor: Float32Array, model: ModelRuntime): Promise<DecidedFrame | 'failed' | null> {
    let started = performance.now();
    const lap = (stage: PipelineStage) => {
      const now = performance.now();
      this.observe(stage, (now - started) / 1000);
      started = now;
    };
    try {
      await model.frames.toTensor(frame.data, tensor, roiOf(frame, model));
      lap('preprocess');
    } catch (err) {
      if (err instanceof RoiError) {
        this.setProblem(`${frame.camera ? `camera ${frame.camera.key}: ` : ''}${err.message} (${err.hint ?? 'fix the roi'})`);
        this.count(frame, 'failed');
      } else if (err instanceof DecodeThreadError) {
        this.count(frame, 'failed');
        this.setProblem(errorText(err));
      } else if (err instanceof ImageError) {
        this.count(frame, 'invalidFrames');
        this.warnSometimes('invalid-frame', 'frame skipped: cannot decode it', { frame: frame.origin, seq: frame.seq, reason: errorText(err) });
      } else {
        throw err;
      }
      return null;
    }
    const refusal = model.classifier.notReady();
    if (refusal) {
      this.count(frame, 'unclassified');
      this.setProblem(`${refusal.message}: ${refusal.hint ?? ''}`.trim());
      return null;
    }
    let vector: Float32Array;
    try {
      started = performance.now();
      vector = await model.encoder.embed(tensor);
      lap('inference');
    } catch (err) {
      this.count(frame, 'failed');
      this.setProblem(`inference failed: ${errorText(err)}`);
      return 'failed';
    }
    let decision: Decision;
    try {
      decision = model.classifier.classify(vector);
    } catch (err) {
      // A model that outputs NaN or zero vectors fails here: counted like an inference failure, never a crash.
      this.count(frame, 'failed');
      this.setProblem(`inference failed: ${model.key} gave a vector the classifier cannot use (${errorText(err)})`);
      return 'failed';
    }
    this.problem = null;
    lap('classify');
    return { frame, vector, decision, model };
  }

  private deliver(decided: DecidedFrame): void {
    const { frame, decision } = decided;
    const c = this.counters;
    this.count(frame, 'classified');
    c.lastDecisionAt = Date.now();
    if (decision.anomaly) {
      this.count(frame, 'anomalies');
      addCount(c.anomaliesByLabel, decision.label);
    } else {
      this.count(frame, 'good');
    }
    for (const consumer of this.consumers) {
      try {
        consumer(decided);
      } catch (err) {
        this.warnSometimes('consumer', 'a decision consumer failed', { error: errorText(err) });
      }
    }
  }

  private count(frame: Frame, what: Counted): void {
    this.counters[what]++;
    if (!frame.camera) return;
    let counts = this.byCamera.get(frame.camera.key);
    if (!counts) this.byCamera.set(frame.camera.key, (counts = this.cameraCounters(frame.camera.key)));
    counts[what]++;
  }

  private setProblem(text: string): void {
    if (this.problem !== text) this.log.warn(text);
    this.problem = text;
  }

  /** A bad stream can fail every frame: log a kind of problem at most every 10 s. */
  private warnSometimes(kind: string, msg: string, fields: Record<string, unknown>): void {
    const now = Date.now();
    if (now - (this.lastWarning.get(kind) ?? 0) < 10_000) return;
    this.lastWarning.set(kind, now);
    this.log.warn(msg, fields);
  }
}
