import { createFrameSource, type FrameSourceOptions } from './factory.js';
import { FrameQueue } from './frame-queue.js';
import type { CameraIdentity, CaptureStatus, FrameSource } from './frame.js';

export interface CameraStatus extends CaptureStatus {
  queued: number;
  droppedWhileBusy: number;
}

/**
 * One camera as a module: its frame source feeding a bounded queue, replaceable while running
 * (a reload), with the old settings back when the new source cannot start. Every frame it queues
 * carries its identity (topic levels, ROI) to the decision and beyond.
 */
export class Camera {
  readonly queue: FrameQueue;
  private source: FrameSource;
  /** Set while a reload replaces the source, so finished() does not take the old source's end for the end. */
  private swapping: Promise<void> | null = null;

  constructor(
    /** Replaced whole on a reload that changes only the ROI; frames already queued keep the one they were taken with. */
    public identity: CameraIdentity,
    private options: FrameSourceOptions,
    queueSize: number,
  ) {
    this.queue = new FrameQueue(queueSize);
    this.source = createFrameSource(options);
  }

  get name(): string {
    return this.source.name;
  }

  start(): Promise<void> {
    return this.startSource(this.source);
  }

  status(): CameraStatus {
    return { ...this.source.status(), queued: this.queue.size, droppedWhileBusy: this.queue.dropped };
  }

  /** Swaps the frame source; when the new one cannot start, the old one comes back and the reason is thrown. */
  async replace(next: FrameSourceOptions): Promise<void> {
    let done!: () => void;
    this.swapping = new Promise((resolve) => (done = resolve));
    let stopped = false;
    try {
      const source = createFrameSource(next);
      await this.source.stop();
      stopped = true;
      await this.startSource(source);
      this.source = source;
      this.options = next;
    } catch (err) {
      if (stopped) {
        const restored = createFrameSource(this.options);
        await this.startSource(restored);
        this.source = restored;
      }
      throw err;
    } finally {
      this.swapping = null;
      done();
    }
  }

  /** Resolves when the source ended by itself (a play-once replay). */
  async ended(): Promise<void> {
    for (;;) {
      const source = this.source;
      await source.ended();
      await this.swapping;
      if (source === this.source) return;
    }
  }

  /** Stops capture; frames already queued are still taken until the queue is closed. */
  async stop(): Promise<void> {
    await this.swapping;
    await this.source.stop();
    this.queue.close();
  }

  private startSource(source: FrameSource): Promise<void> {
    // Replay can wait for room (no frame of the sample line is lost); a live camera cannot.
    return source.start(
      source.kind === 'replay'
        ? (frame) => this.queue.pushWhenRoom({ ...frame, camera: this.identity })
        : (frame) => this.queue.push({ ...frame, camera: this.identity }),
    );
  }
}
