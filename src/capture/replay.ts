import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { UserError, createLogger, errorText, isUserError, readRegularFileSync, type FileLimits } from '../common/index.js';
import type { CaptureState, CaptureStatus, FrameHandler, FrameSource } from './frame.js';
import { defaultMaxFrameBytes } from './jpeg-splitter.js';

export interface ReplayOptions {
  kind: 'replay';
  /** Folder of .jpg/.jpeg/.png files, played in name order (numbers compared as numbers). */
  folder: string;
  /** Frames per second; 0 = as fast as the consumer takes them. */
  fps?: number;
  /** Start again after the last file; false = play once, then state 'ended'. */
  loop?: boolean;
  /** Source name for status and logs. */
  name?: string;
  /** Larger files are dropped (counted) unread, as a camera's oversized frames are. */
  maxFrameBytes?: number;
}

export const replayDefaults = { fps: 10, loop: true, name: 'replay', maxFrameBytes: defaultMaxFrameBytes } as const;

const imageExtension = /\.(jpe?g|png)$/i;

export class ReplaySource implements FrameSource {
  readonly kind = 'replay';
  readonly name: string;
  private readonly folder: string;
  private readonly fps: number;
  private readonly loop: boolean;
  private readonly fileLimits: FileLimits;
  private readonly log;
  private state: CaptureState = 'stopped';
  private framesReceived = 0;
  private framesDropped = 0;
  private lastFrameAt: number | null = null;
  private lastError: string | null = null;
  private started = false;
  private stopping = false;
  private wakeSleeper: (() => void) | undefined;
  private markEnded!: () => void;
  private readonly endedPromise = new Promise<void>((resolve) => (this.markEnded = resolve));

  constructor(options: ReplayOptions) {
    this.folder = options.folder;
    this.fps = options.fps ?? replayDefaults.fps;
    this.loop = options.loop ?? replayDefaults.loop;
    this.name = options.name ?? replayDefaults.name;
    this.fileLimits = {
      what: 'frame',
      maxBytes: options.maxFrameBytes ?? replayDefaults.maxFrameBytes,
      hint: 'replay folders hold regular JPEG/PNG files within capture.maxFrameBytes; the frame is dropped',
    };
    if (!(this.fps >= 0) || !Number.isFinite(this.fps)) {
      throw new UserError(`replay fps must be a number >= 0, got ${options.fps}`, 'use 0 to replay as fast as the pipeline takes frames');
    }
    this.log = createLogger('capture').child(this.name);
  }

  async start(onFrame: FrameHandler): Promise<void> {
    if (this.started) throw new Error(`frame source ${this.name} was already started`);
    this.started = true;
    this.state = 'starting';
    let files: string[];
    try {
      files = await this.listImages();
    } catch (err) {
      this.fail(err);
      throw err;
    }
    this.state = 'running';
    this.log.info('replaying', { folder: this.folder, files: files.length, fps: this.fps, loop: this.loop });
    void this.play(files, onFrame);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeSleeper?.();
    if (this.state !== 'ended' && this.state !== 'failed') this.state = 'stopped';
    this.markEnded();
  }

  ended(): Promise<void> {
    return this.endedPromise;
  }

  status(): CaptureStatus {
    return {
      source: this.name,
      kind: this.kind,
      state: this.state,
      framesReceived: this.framesReceived,
      framesDropped: this.framesDropped,
      restarts: 0,
      lastFrameAt: this.lastFrameAt,
      lastError: this.lastError,
    };
  }

  private async play(firstPass: string[], onFrame: FrameHandler): Promise<void> {
    const interval = this.fps > 0 ? 1000 / this.fps : 0;
    let due = performance.now();
    let files = firstPass;
    for (;;) {
      const receivedBefore = this.framesReceived;
      for (const file of files) {
        if (interval > 0) {
          // Timers wake in whole milliseconds, so a frame due within 1 ms goes now: a rate past
          // 1000 fps then holds on average instead of stopping at one frame per timer.
          const wait = due - performance.now();
          if (wait >= 1) await this.sleep(wait);
          else await yieldToEventLoop();
          // Schedule against the clock so pacing does not drift, but never burst to catch up
          // after a slow consumer.
          due = Math.max(due + interval, performance.now());
        } else {
          await yieldToEventLoop();
        }
        if (this.stopping) return;
        let data: Buffer;
        try {
          // A FIFO, a device or an oversized file is a dropped frame with its reason, never a stop.
          // Read synchronously: a frame file is small and local, and the four round trips of an
          // async read to libuv's threads cost 150-250 us of CPU a frame here against 20-40 us,
          // the largest share of the daemon's main thread at full rate.
          data = readRegularFileSync(join(this.folder, file), this.fileLimits);
        } catch (err) {
          this.framesDropped += 1;
          const reason = errorText(err);
          // Once per reason, not once per pass of a looping replay.
          if (reason !== this.lastError) this.log.warn('frame dropped', { file, reason });
          this.lastError = reason;
          continue;
        }
        if (this.stopping) return;
        this.framesReceived += 1;
        this.lastFrameAt = Date.now();
        try {
          await onFrame({ seq: this.framesReceived, capturedAt: this.lastFrameAt, data, origin: file });
        } catch (err) {
          this.log.error('frame handler failed', { error: errorText(err) });
        }
      }
      if (this.framesReceived === receivedBefore) {
        // Every file failed: looping would only spin on the same errors.
        this.state = 'failed';
        this.log.error('replay failed', { error: this.lastError });
        this.markEnded();
        return;
      }
      if (!this.loop) {
        this.state = 'ended';
        this.log.info('replay ended', { frames: this.framesReceived });
        this.markEnded();
        return;
      }
      try {
        // Listed again each pass so images added or removed while running are picked up.
        files = await this.listImages();
      } catch (err) {
        this.fail(err);
        this.markEnded();
        return;
      }
    }
  }

  private async listImages(): Promise<string[]> {
    let names: string[];
    try {
      const entries = await readdir(this.folder, { withFileTypes: true });
      names = entries.filter((entry) => !entry.isDirectory() && imageExtension.test(entry.name)).map((entry) => entry.name);
    } catch (err) {
      throw new UserError(`cannot read the replay folder ${this.folder}: ${errorText(err)}`, 'check the replay folder path and its permissions', { cause: err });
    }
    if (names.length === 0) {
      throw new UserError(`the replay folder ${this.folder} holds no .jpg, .jpeg or .png files`, 'put the images to replay into that folder, or point the replay source at another one');
    }
    return names.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  }

  private sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wakeSleeper = done;
    });
  }

  private fail(err: unknown): void {
    this.state = 'failed';
    this.lastError = isUserError(err) && err.hint ? `${err.message} (${err.hint})` : errorText(err);
    this.log.error('replay failed', { error: this.lastError });
  }
}
