import { errorText, type Logger } from '../common/index.js';
import type { Frame, FrameQueue } from '../capture/index.js';
import type { Decision } from '../knn/index.js';
import { ImageError, RoiError } from '../preprocess/index.js';
import type { Model, References } from './parts.js';

export interface PipelineCounters {
  /** Frames that went through preprocess, encoder and classifier. */
  classified: number;
  good: number;
  anomalies: number;
  anomaliesByLabel: Record<string, number>;
  /** Frames that could not be decoded (corrupt, truncated): skipped. */
  invalidFrames: number;
  /** Frames that could not be classified because no reference is enrolled yet. */
  unclassified: number;
  /** Frames lost to an inference failure (a worker crash, say). */
  failed: number;
  /** ms since epoch of the last decision; the watchdog and health check read it. */
  lastDecisionAt: number | null;
}

/** What becomes of each decision, in frame order (the daemon writes anomalies to the outbox). */
export type DecisionSink = (frame: Frame, decision: Decision) => void;

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
    anomaliesByLabel: {},
    invalidFrames: 0,
    unclassified: 0,
    failed: 0,
    lastDecisionAt: null,
  };
  /** Why frames are not being classified right now, for status; null while all is well. */
  problem: string | null = null;
  private tail: Promise<void> = Promise.resolve();
  private lastWarning = new Map<string, number>();

  constructor(
    private readonly queue: FrameQueue,
    private readonly model: Model,
    private readonly references: References,
    private readonly sink: DecisionSink,
    private readonly log: Logger,
    private readonly inFlight: number,
    private readonly observe: StageObserver = () => {},
  ) {}

  /** Runs until the queue is closed and every frame taken from it is decided. */
  async run(): Promise<void> {
    const slots = Array.from({ length: this.inFlight }, () => this.slot(this.model.preprocessor.createTensor()));
    await Promise.all(slots);
    await this.tail;
  }

  private async slot(tensor: Float32Array): Promise<void> {
    for (;;) {
      const [frame] = await this.queue.take(1);
      if (!frame) return;
      // Claim this frame's place in the output order before any await.
      const previous = this.tail;
      let release!: () => void;
      this.tail = new Promise((resolve) => (release = resolve));
      try {
        const decision = await this.decide(frame, tensor);
        await previous;
        if (decision) this.deliver(frame, decision);
      } finally {
        release();
      }
    }
  }

  private async decide(frame: Frame, tensor: Float32Array): Promise<Decision | null> {
    let started = performance.now();
    const lap = (stage: PipelineStage) => {
      const now = performance.now();
      this.observe(stage, (now - started) / 1000);
      started = now;
    };
    try {
      await this.model.preprocessor.toTensor(frame.data, tensor);
      lap('preprocess');
    } catch (err) {
      if (err instanceof RoiError) {
        this.setProblem(`${err.message} (${err.hint ?? 'fix preprocess.roi'})`);
        this.counters.failed++;
      } else if (err instanceof ImageError) {
        this.counters.invalidFrames++;
        this.warnSometimes('invalid-frame', 'frame skipped: cannot decode it', { frame: frame.origin, seq: frame.seq, reason: errorText(err) });
      } else {
        throw err;
      }
      return null;
    }
    const refusal = this.references.classifier.notReady();
    if (refusal) {
      this.counters.unclassified++;
      this.setProblem(`${refusal.message}: ${refusal.hint ?? ''}`.trim());
      return null;
    }
    let vector: Float32Array;
    try {
      started = performance.now();
      vector = await this.model.encoder.embed(tensor);
      lap('inference');
    } catch (err) {
      this.counters.failed++;
      this.setProblem(`inference failed: ${errorText(err)}`);
      return null;
    }
    this.problem = null;
    const decision = this.references.classifier.classify(vector);
    lap('classify');
    return decision;
  }

  private deliver(frame: Frame, decision: Decision): void {
    const c = this.counters;
    c.classified++;
    c.lastDecisionAt = Date.now();
    if (decision.anomaly) {
      c.anomalies++;
      c.anomaliesByLabel[decision.label] = (c.anomaliesByLabel[decision.label] ?? 0) + 1;
    } else {
      c.good++;
    }
    this.sink(frame, decision);
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
