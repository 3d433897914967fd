import type { Frame } from './frame.js';
import type { FrameQueue } from './frame-queue.js';

/** Where the pipeline takes its frames: one camera's queue, or several cameras' through a FrameFanIn. */
export interface FrameFeed {
  /** Resolves with 1..max frames as soon as one is available; with [] once the feed has ended. */
  take(max?: number): Promise<Frame[]>;
}

interface Taker {
  max: number;
  resolve: (frames: Frame[]) => void;
}

/**
 * Several cameras' queues as one feed for one pipeline. Frames are taken from the queues in
 * turn (round robin), one per queue per turn: a camera at full rate gets its share of the
 * encoder, never more, and cannot starve a slower one. Each queue keeps its own bound and drops
 * its own oldest frames.
 */
export class FrameFanIn implements FrameFeed {
  private queues: FrameQueue[] = [];
  /** The queue whose turn is next. */
  private turn = 0;
  private takers: Taker[] = [];
  private isClosed = false;

  add(queue: FrameQueue): void {
    this.queues.push(queue);
    queue.onFrame = () => this.serve();
    this.serve();
  }

  /** Stops reading a queue (a camera removed); frames still in it are left with it. */
  remove(queue: FrameQueue): void {
    const at = this.queues.indexOf(queue);
    if (at < 0) return;
    queue.onFrame = null;
    this.queues.splice(at, 1);
    if (this.turn > at) this.turn--;
    if (this.turn >= this.queues.length) this.turn = 0;
  }

  take(max = 1): Promise<Frame[]> {
    if (this.takers.length === 0) {
      const frames = this.collect(Math.max(1, max));
      if (frames.length > 0 || this.isClosed) return Promise.resolve(frames);
    }
    return new Promise((resolve) => this.takers.push({ max: Math.max(1, max), resolve }));
  }

  /** No queue is added any more: takers get what is still queued, then []. */
  close(): void {
    this.isClosed = true;
    this.serve();
  }

  private serve(): void {
    while (this.takers.length > 0) {
      const frames = this.collect(this.takers[0]!.max);
      if (frames.length === 0 && !this.isClosed) return;
      this.takers.shift()!.resolve(frames);
    }
  }

  /** Up to `max` frames, one from each queue in turn, starting with the queue whose turn it is. */
  private collect(max: number): Frame[] {
    const frames: Frame[] = [];
    for (let empty = 0; frames.length < max && empty < this.queues.length; ) {
      const queue = this.queues[this.turn]!;
      this.turn = (this.turn + 1) % this.queues.length;
      const [frame] = queue.takeNow(1);
      if (frame) {
        frames.push(frame);
        empty = 0;
      } else {
        empty++;
      }
    }
    return frames;
  }
}
