import { describe, expect, it } from 'vitest';
import { FrameQueue, type Frame } from '../../dist/capture/index.js';

function frame(seq: number): Frame {
  return { seq, capturedAt: Date.now(), data: Buffer.from([seq]), origin: 'test' };
}

const seqs = (frames: Frame[]): number[] => frames.map((f) => f.seq);

describe('FrameQueue', () => {
  it('keeps the newest frames when full, counts drops and never exceeds its capacity', async () => {
    const queue = new FrameQueue(3);
    for (let seq = 1; seq <= 10; seq++) {
      queue.push(frame(seq));
      expect(queue.size).toBeLessThanOrEqual(3);
    }
    expect(queue.dropped).toBe(7);
    expect(seqs(await queue.take(10))).toEqual([8, 9, 10]);
    expect(queue.size).toBe(0);
  });

  it('take(max) resolves as soon as one frame is there, and returns at most max', async () => {
    const queue = new FrameQueue(8);
    const waiting = queue.take(4);
    queue.push(frame(1));
    expect(seqs(await waiting)).toEqual([1]);
    for (let seq = 2; seq <= 6; seq++) queue.push(frame(seq));
    expect(seqs(await queue.take(4))).toEqual([2, 3, 4, 5]);
    expect(seqs(await queue.take(4))).toEqual([6]);
  });

  it('serves several waiting consumers in order', async () => {
    const queue = new FrameQueue(4);
    const first = queue.take(1);
    const second = queue.take(1);
    queue.push(frame(1));
    queue.push(frame(2));
    expect(seqs(await first)).toEqual([1]);
    expect(seqs(await second)).toEqual([2]);
  });

  it('close() wakes waiters with [] but lets queued frames be taken first', async () => {
    const queue = new FrameQueue(2);
    const waiting = queue.take(2);
    expect(queue.closed).toBe(false);
    queue.close();
    expect(queue.closed).toBe(true);
    expect(await waiting).toEqual([]);

    const withFrames = new FrameQueue(2);
    withFrames.push(frame(1));
    withFrames.close();
    withFrames.push(frame(2)); // ignored after close
    expect(seqs(await withFrames.take(5))).toEqual([1]);
    expect(await withFrames.take(5)).toEqual([]);
  });

  it('pushWhenRoom waits for space instead of dropping', async () => {
    const queue = new FrameQueue(2);
    await queue.pushWhenRoom(frame(1));
    await queue.pushWhenRoom(frame(2));
    let third = false;
    const pending = queue.pushWhenRoom(frame(3)).then(() => (third = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(third).toBe(false);
    expect(seqs(await queue.take(1))).toEqual([1]);
    await pending;
    expect(seqs(await queue.take(5))).toEqual([2, 3]);
    expect(queue.dropped).toBe(0);

    queue.push(frame(4));
    queue.push(frame(5));
    const blocked = queue.pushWhenRoom(frame(6));
    queue.close();
    await blocked; // close releases a blocked producer
  });

  it('rejects a capacity below 1 or not whole, and works with exactly 1', async () => {
    expect(() => new FrameQueue(0)).toThrow(new RangeError('FrameQueue capacity must be a positive integer, got 0'));
    expect(() => new FrameQueue(2.5)).toThrow(RangeError);
    const queue = new FrameQueue(1);
    queue.push(frame(1));
    queue.push(frame(2));
    expect(queue.dropped).toBe(1);
    expect(seqs(await queue.take(3))).toEqual([2]);
  });
});
