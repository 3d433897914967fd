import { Worker } from 'node:worker_threads';
import { ImageError, RoiError, type Roi } from './checks.js';

/** To a decode thread: one encoded image (its own buffer, transferred) and the region to crop. */
export interface DecodeRequest {
  id: number;
  image: Uint8Array;
  roi: Roi | undefined;
}

/** An error thrown in a decode thread, by class, so it is thrown again as the same class here. */
export type ThrownInThread = { kind: 'image'; reason: string } | { kind: 'roi'; message: string; hint: string | undefined } | { kind: 'other'; message: string };

/** From a decode thread (several in one message): the tensor, or null when the fast decoder leaves the image to sharp. */
export type DecodeReply = { id: number; tensor: Float32Array | null } | { id: number; error: ThrownInThread };

/** A decode thread died with frames in flight (not the frames' fault): they were not decoded. */
export class DecodeThreadError extends Error {}

interface Pending {
  resolve: (tensor: Float32Array | null) => void;
  reject: (err: Error) => void;
}

interface Thread {
  worker: Worker;
  pending: Map<number, Pending>;
  lastError?: Error;
}

/**
 * Worker threads that decode large JPEGs, each with a Preprocessor built from `workerData`
 * (src/preprocess/decode-worker.ts). Started on the first image, not before (a raw-frame camera
 * never starts one); a thread with nothing in flight does not keep the process alive; a thread
 * that dies fails its frames in flight and is replaced by the next image.
 */
export class DecodePool {
  private readonly threads: Thread[] = [];
  private nextId = 1;
  private closed = false;
  /** Threads started and not yet exited. */
  private running = 0;

  constructor(
    private readonly size: number,
    private readonly workerData: unknown,
  ) {}

  /** Threads running now (0 before the first image and after close). */
  get live(): number {
    return this.running;
  }

  /** The image's tensor, decoded in the least busy thread; null when the fast decoder does not handle this JPEG. */
  decode(image: Uint8Array, roi: Roi | undefined): Promise<Float32Array | null> {
    if (this.closed) return Promise.reject(new Error('the preprocessor is closed'));
    while (this.threads.length < this.size) this.threads.push(this.start());
    const thread = this.threads.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    // A Buffer may be a view of a larger pooled buffer: transfer a copy of exactly its bytes.
    const copy = new Uint8Array(image);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (thread.pending.size === 0) thread.worker.ref();
      thread.pending.set(id, { resolve, reject });
      thread.worker.postMessage({ id, image: copy, roi } satisfies DecodeRequest, [copy.buffer]);
    });
  }

  /** Terminates the threads; images in flight fail. */
  async close(): Promise<void> {
    this.closed = true;
    const threads = this.threads.splice(0);
    for (const thread of threads) this.fail(thread, new Error('the preprocessor was closed before this image was decoded'));
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }

  private start(): Thread {
    const worker = new Worker(new URL('./decode-worker.js', import.meta.url), { workerData: this.workerData });
    const thread: Thread = { worker, pending: new Map() };
    this.running++;
    worker.on('message', (replies: DecodeReply[]) => {
      for (const reply of replies) {
        const pending = thread.pending.get(reply.id);
        if (!pending) continue;
        thread.pending.delete(reply.id);
        if ('error' in reply) pending.reject(revive(reply.error));
        else pending.resolve(reply.tensor);
      }
      if (thread.pending.size === 0) worker.unref();
    });
    worker.on('error', (err) => (thread.lastError = err));
    worker.on('exit', (code) => {
      this.running--;
      const at = this.threads.indexOf(thread);
      if (at < 0) return;
      this.threads.splice(at, 1);
      const reason = thread.lastError?.message ?? `exit code ${code}`;
      this.fail(thread, new DecodeThreadError(`a decode thread stopped (${reason}); ${thread.pending.size} frame(s) it held were not decoded; the next frame starts a new one`));
    });
    // Held while it has frames in flight (decode()), so an idle one never keeps the process alive;
    // after the listeners: adding a 'message' listener holds it again.
    worker.unref();
    return thread;
  }

  private fail(thread: Thread, err: Error): void {
    for (const pending of thread.pending.values()) pending.reject(err);
    thread.pending.clear();
  }
}

/** What a decode thread sends for an error it caught. */
export function thrownInThread(err: unknown): ThrownInThread {
  if (err instanceof ImageError) return { kind: 'image', reason: err.reason };
  if (err instanceof RoiError) return { kind: 'roi', message: err.message, hint: err.hint };
  return { kind: 'other', message: err instanceof Error ? err.message : String(err) };
}

function revive(thrown: ThrownInThread): Error {
  if (thrown.kind === 'image') return new ImageError(thrown.reason);
  if (thrown.kind === 'roi') return new RoiError(thrown.message, thrown.hint);
  return new Error(`in a decode thread: ${thrown.message}`);
}
