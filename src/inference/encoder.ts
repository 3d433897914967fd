import { Worker } from 'node:worker_threads';
import { createLogger, errorText, UserError, type Logger } from '../common/index.js';
import type { Bundle } from './bundle.js';
import { checkModelAgainstManifest } from './check.js';
import type { FromWorker, ToWorker, WorkerSetup } from './protocol.js';

export interface EncoderOptions {
  /** Execution providers to try in order (default ['tensorrt', 'cuda', 'cpu']). */
  providers?: string[];
  /** ONNX Runtime intra-op threads per worker (default: ONNX Runtime's choice, one per core). */
  intraOpThreads?: number;
  /** Worker threads, each with its own session (default 1). */
  workers?: number;
  /** Most frames per session.run (default 16). */
  maxBatch?: number;
  /** Longest a frame waits for others to fill a batch (default 2 ms). */
  maxWaitMs?: number;
  logger?: Logger;
}

export interface EncoderStats {
  /** Frames asked for (embed calls, and each frame of embedBatch). */
  requests: number;
  /** session.run calls. */
  batches: number;
  /** Workers that died and were replaced. */
  workerCrashes: number;
}

interface Request {
  input: Float32Array;
  resolve: (vector: Float32Array) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  /** The worker's batch buffers; null while the worker holds them. */
  input: Float32Array | null;
  output: Float32Array | null;
  /** Requests of the batch being run, null when idle. */
  running: Request[] | null;
  batchId: number;
  /** Last uncaught error, reported when the worker exits. */
  lastError?: Error;
}

const defaultProviders = ['tensorrt', 'cuda', 'cpu'];
/** How long close() lets a running batch finish before it terminates the workers anyway. */
const closeGraceMs = 10_000;

/**
 * Turns preprocessed frames into L2-normalised embeddings with ONNX Runtime in worker threads.
 * Concurrent embed() calls are batched: up to maxBatch frames, waiting at most maxWaitMs.
 */
export class Encoder {
  /** Floats per frame the model takes (channels * height * width). */
  readonly inputLength: number;
  /** Length of every embedding. */
  readonly dimension: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Request[] = [];
  private timer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private nextBatchId = 1;
  private readonly counts: EncoderStats = { requests: 0, batches: 0, workerCrashes: 0 };
  private readonly setup: WorkerSetup;
  private readonly maxBatch: number;
  private readonly maxWaitMs: number;
  private readonly log: Logger;
  private chosenProvider = '';

  private constructor(
    readonly bundle: Bundle,
    options: EncoderOptions,
  ) {
    const { input, output } = bundle.manifest;
    const channels = input.colour === 'gray' ? 1 : 3;
    this.inputLength = channels * input.height * input.width;
    this.dimension = output.dimension;
    this.maxBatch = options.maxBatch ?? 16;
    this.maxWaitMs = options.maxWaitMs ?? 2;
    this.log = options.logger ?? createLogger('inference');
    this.setup = {
      modelPath: bundle.modelPath,
      providers: options.providers ?? defaultProviders,
      intraOpThreads: options.intraOpThreads,
      inputName: input.name,
      outputName: output.name,
      frameShape: [channels, input.height, input.width],
      dimension: output.dimension,
    };
  }

  /** Execution provider the sessions run on, e.g. 'cpu'. */
  get provider(): string {
    return this.chosenProvider;
  }

  /** Start the workers and check the model against its manifest. */
  static async open(bundle: Bundle, options: EncoderOptions = {}): Promise<Encoder> {
    const workers = options.workers ?? 1;
    for (const [name, value, min] of [['workers', workers, 1], ['maxBatch', options.maxBatch ?? 16, 1], ['maxWaitMs', options.maxWaitMs ?? 2, 0]] as const) {
      if (!Number.isInteger(value) || value < min) throw new UserError(`inference ${name} is ${value}: it must be an integer >= ${min}`, `fix inference.${name} in the config`);
    }
    const encoder = new Encoder(bundle, options);
    const started = await Promise.allSettled(Array.from({ length: workers }, () => encoder.startWorker()));
    const failure = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failure) {
      await encoder.close();
      throw failure.reason;
    }
    encoder.log.info('inference ready', { model: bundle.key, provider: encoder.provider, workers, maxBatch: encoder.maxBatch });
    return encoder;
  }

  /**
   * Embed one preprocessed frame. `input` is copied when its batch is dispatched, so do not
   * change it until the promise settles.
   */
  embed(input: Float32Array): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new Error('the encoder is closed'));
    if (input.length !== this.inputLength) {
      return Promise.reject(new Error(`frame tensor has ${input.length} floats, ${this.bundle.key} takes ${this.inputLength}`));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      this.counts.requests++;
      if (this.queue.length >= this.maxBatch) this.dispatch();
      else this.timer ??= setTimeout(() => this.dispatch(), this.maxWaitMs);
    });
  }

  /** Embed many frames (enroll, eval); they share batches with any concurrent embed() calls. */
  embedBatch(inputs: readonly Float32Array[]): Promise<Float32Array[]> {
    return Promise.all(inputs.map((input) => this.embed(input)));
  }

  stats(): EncoderStats {
    return { ...this.counts };
  }

  /** Stop the workers; frames not yet embedded are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.restartTimer);
    const dropped = [...this.queue.splice(0), ...this.slots.flatMap((s) => s.running ?? [])];
    for (const request of dropped) request.reject(new Error('the encoder was closed before this frame was embedded'));
    // A worker terminated inside session.run() can abort the whole process from ONNX Runtime's
    // native teardown: let running batches finish first (their results go nowhere).
    const deadline = Date.now() + closeGraceMs;
    while (this.slots.some((slot) => slot.running) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    await Promise.all(this.slots.splice(0).map((slot) => slot.worker.terminate()));
  }

  /** Send queued frames to idle workers, up to maxBatch per worker. */
  private dispatch(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.running || !slot.input || !slot.output) continue;
      const batch = this.queue.splice(0, this.maxBatch);
      const { input, output } = slot;
      batch.forEach((request, i) => input.set(request.input, i * this.inputLength));
      slot.running = batch;
      slot.batchId = this.nextBatchId++;
      slot.input = slot.output = null;
      this.counts.batches++;
      const message: ToWorker = { type: 'run', id: slot.batchId, count: batch.length, input, output };
      slot.worker.postMessage(message, [input.buffer as ArrayBuffer, output.buffer as ArrayBuffer]);
    }
  }

  private onResult(slot: Slot, message: Extract<FromWorker, { type: 'done' | 'run-failed' }>): void {
    const batch = slot.running ?? [];
    slot.running = null;
    slot.input = message.input;
    slot.output = message.output;
    if (message.type === 'done') {
      const dim = this.dimension;
      batch.forEach((request, i) => request.resolve(message.output.slice(i * dim, (i + 1) * dim)));
    } else {
      const err = new Error(`inference failed for a batch of ${batch.length} frame(s): ${message.error}`);
      for (const request of batch) request.reject(err);
    }
    // Frames that queued while every worker was busy have waited long enough.
    if (this.queue.length > 0 && !this.timer) this.dispatch();
  }

  /** Start one worker; resolves once its session is open and matches the manifest. */
  private startWorker(): Promise<void> {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: this.setup });
    const slot: Slot = { worker, input: null, output: null, running: null, batchId: 0 };
    return new Promise((resolve, reject) => {
      let ready = false;
      worker.on('message', (message: FromWorker) => {
        if (message.type === 'done' || message.type === 'run-failed') {
          this.onResult(slot, message);
          return;
        }
        if (message.type === 'open-failed') {
          const tried = message.failed.map((f) => `${f.provider}: ${f.error}`).join('; ');
          reject(new UserError(`no execution provider could open ${this.bundle.modelPath} (${tried})`, 'check the model file, the providers setting and the onnxruntime-node install'));
          void worker.terminate();
          return;
        }
        try {
          checkModelAgainstManifest(this.bundle.manifest, this.bundle.modelPath, message.inputs, message.outputs);
        } catch (err) {
          reject(err);
          void worker.terminate();
          return;
        }
        if (this.closed) {
          void worker.terminate();
          return;
        }
        if (!this.chosenProvider) {
          this.chosenProvider = message.provider;
          // Info, not warn: the default list names GPU providers that CPU-only builds never have.
          for (const f of message.failed) this.log.info('execution provider unavailable, trying the next', { provider: f.provider, error: f.error });
        } else if (message.provider !== this.provider) {
          this.log.warn('inference worker runs on a different execution provider', { provider: message.provider, expected: this.provider });
        }
        ready = true;
        slot.input = new Float32Array(this.maxBatch * this.inputLength);
        slot.output = new Float32Array(this.maxBatch * this.dimension);
        this.slots.push(slot);
        resolve();
        this.dispatch();
      });
      worker.on('error', (err) => {
        slot.lastError = err;
      });
      worker.on('exit', (code) => {
        if (!ready) {
          reject(new Error(`inference worker exited while opening the model (code ${code})${slot.lastError ? `: ${slot.lastError.message}` : ''}`));
          return;
        }
        if (!this.closed) this.onCrash(slot, code);
      });
    });
  }

  /** A worker died: fail its frames, then replace it. */
  private onCrash(slot: Slot, code: number): void {
    this.counts.workerCrashes++;
    this.slots.splice(this.slots.indexOf(slot), 1);
    const reason = slot.lastError ? errorText(slot.lastError) : `exit code ${code}`;
    const lost = slot.running ?? [];
    const err = new Error(`inference worker crashed (${reason}); ${lost.length} frame(s) in flight were dropped; a new worker is starting`);
    for (const request of lost) request.reject(err);
    this.log.error('inference worker crashed; starting a new one', { reason, dropped: lost.length });
    this.replaceWorker(1000);
  }

  private replaceWorker(retryMs: number): void {
    this.startWorker().catch((startErr: unknown) => {
      if (this.closed) return;
      // Frames cannot wait for an unknown time: fail the queued ones, keep trying with backoff.
      const err = new Error(`no inference worker is running: ${errorText(startErr)}`);
      if (this.slots.length === 0) for (const request of this.queue.splice(0)) request.reject(err);
      this.log.error('cannot start an inference worker; retrying', { error: errorText(startErr), retryMs });
      this.restartTimer = setTimeout(() => this.replaceWorker(Math.min(retryMs * 2, 30_000)), retryMs);
    });
  }
}
