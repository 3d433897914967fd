import type { Frame } from './frame.js';

interface Taker {
  max: number;
  resolve: (frames: Frame[]) => void;
}

/**
 * Bounded hand-over between capture and the pipeline. When the consumer is slower than the
 * camera, the newest frames are worth more than old ones (an inspection result about a part
 * that has already left the belt is useless), so a full queue drops its oldest frame.
 */
export class FrameQueue {
  private readonly ring: (Frame | undefined)[];
  private head = 0;
  private count = 0;
  private takers: Taker[] = [];
  private roomWaiters: (() => void)[] = [];
  private isClosed = false;
  private droppedCount = 0;
  /** Told after a frame was added that no taker took: a FrameFanIn reading several queues. */
  onFrame: (() => void) | null = null;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`FrameQueue capacity must be a positive integer, got ${capacity}`);
    }
    this.ring = new Array<Frame | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Frames pushed out by newer ones. */
  get dropped(): number {
    return this.droppedCount;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Adds a frame, dropping the oldest when full. Ignored after close(). */
  push(frame: Frame): void {
    if (this.isClosed) return;
    if (this.count === this.capacity) {
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.count -= 1;
      this.droppedCount += 1;
    }
    this.ring[(this.head + this.count) % this.capacity] = frame;
    this.count += 1;
    this.serveTakers();
    if (this.count > 0) this.onFrame?.();
  }

  /**
   * Adds a frame without dropping any: waits until there is room. For sources that can pause
   * (a max-rate replay), so they feed a slower pipeline losslessly. Discards the frame if the
   * queue is closed meanwhile.
   */
  async pushWhenRoom(frame: Frame): Promise<void> {
    while (this.count === this.capacity && !this.isClosed) {
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
    this.push(frame);
  }

  /**
   * Resolves with 1..max frames, oldest first, as soon as at least one is available; with []
   * once the queue is closed and empty.
   */
  take(max = 1): Promise<Frame[]> {
    if (this.count > 0 && this.takers.length === 0) return Promise.resolve(this.remove(max));
    if (this.isClosed) return Promise.resolve([]);
    return new Promise((resolve) => this.takers.push({ max: Math.max(1, max), resolve }));
  }

  /** Up to `max` frames, oldest first, without waiting: [] when none is queued. */
  takeNow(max = 1): Frame[] {
    return this.count > 0 ? this.remove(max) : [];
  }

  /** Wakes every waiter; frames already queued can still be taken. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const taker of this.takers.splice(0)) taker.resolve([]);
    this.wakeRoomWaiters();
  }

  private serveTakers(): void {
    while (this.count > 0 && this.takers.length > 0) {
      const taker = this.takers.shift()!;
      taker.resolve(this.remove(taker.max));
    }
  }

  private remove(max: number): Frame[] {
    const n = Math.min(Math.max(1, max), this.count);
    const frames: Frame[] = [];
    for (let k = 0; k < n; k++) {
      frames.push(this.ring[this.head]!);
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
    }
    this.count -= n;
    this.wakeRoomWaiters();
    return frames;
  }

  private wakeRoomWaiters(): void {
    for (const wake of this.roomWaiters.splice(0)) wake();
  }
}
