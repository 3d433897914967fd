import { describe, expect, it } from 'vitest';
import { FrameFanIn, FrameQueue, type Frame } from '../../dist/capture/index.js';

function fill(queue: FrameQueue, origin: string, count: number, from = 1): void {
  for (let seq = from; seq < from + count; seq++) queue.push({ seq, capturedAt: Date.now(), data: Buffer.from([seq]), origin });
}

const names = (frames: Frame[]): string[] => frames.map((f) => `${f.origin}${f.seq}`);

async function takeAll(feed: FrameFanIn, n: number): Promise<string[]> {
  const taken: Frame[] = [];
  for (let i = 0; i < n; i++) taken.push(...(await feed.take(1)));
  return names(taken);
}

describe('FrameFanIn', () => {
  it('takes one frame from each camera in turn, so a camera with a full queue cannot starve the others', async () => {
    const [a, b, c] = [new FrameQueue(8), new FrameQueue(8), new FrameQueue(8)];
    const feed = new FrameFanIn();
    for (const q of [a, b, c]) feed.add(q);
    fill(a, 'a', 6);
    fill(b, 'b', 2);
    fill(c, 'c', 4);
    expect(await takeAll(feed, 12)).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'c2', 'a3', 'c3', 'a4', 'c4', 'a5', 'a6']);
    // A batch takes one frame per camera too, and the turn goes on from where it stopped (b, after a6).
    fill(a, 'a', 4, 7);
    fill(b, 'b', 4, 3);
    fill(c, 'c', 1, 5);
    expect(names(await feed.take(3))).toEqual(['b3', 'c5', 'a7']);
    expect(names(await feed.take(3))).toEqual(['b4', 'a8', 'b5']);
  });

  it('keeps the shares equal when every camera is refilled faster than frames are taken', async () => {
    const queues = [new FrameQueue(4), new FrameQueue(4), new FrameQueue(4), new FrameQueue(4)];
    const feed = new FrameFanIn();
    queues.forEach((q) => feed.add(q));
    const taken = new Map<string, number>();
    for (let round = 0; round < 100; round++) {
      // Camera 0 delivers four frames for every one of the others.
      queues.forEach((q, i) => fill(q, `cam${i}-`, i === 0 ? 4 : 1, round * 4));
      for (const f of await feed.take(2)) taken.set(f.origin, (taken.get(f.origin) ?? 0) + 1);
    }
    expect([...taken.values()]).toEqual([50, 50, 50, 50]);
  });

  it('wakes a waiting take when any camera delivers, ends after close once every queue is empty, and forgets a removed queue', async () => {
    const [a, b] = [new FrameQueue(4), new FrameQueue(4)];
    const feed = new FrameFanIn();
    feed.add(a);
    feed.add(b);
    const waiting = feed.take(4);
    fill(b, 'b', 1);
    expect(names(await waiting)).toEqual(['b1']);
    feed.remove(b);
    fill(b, 'b', 1, 2);
    fill(a, 'a', 1);
    feed.close();
    expect(names(await feed.take(4))).toEqual(['a1']);
    expect(await feed.take(4)).toEqual([]);
    expect(b.size).toBe(1);
  });
});
