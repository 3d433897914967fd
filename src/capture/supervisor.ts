import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { UserError, createLogger, errorText, type Logger } from '../common/index.js';
import type { CaptureState, CaptureStatus, FrameHandler, FrameSource, FrameSourceKind } from './frame.js';
import { JpegSplitter, defaultMaxFrameBytes } from './jpeg-splitter.js';
import { RawFrameSplitter, type RawLayout } from './raw-splitter.js';

/** How a camera process is watched and restarted. */
export interface SupervisionOptions {
  /** Restart the process when it delivers no frame for this long (also counts from its start). */
  stallTimeoutMs?: number;
  /** Restart delay after a run that delivered frames (the camera works), and the first one after a run that did not. */
  restartInitialMs?: number;
  /** Runs in a row without a frame (the camera is gone) double the delay up to this. */
  restartMaxMs?: number;
  /** stop() and stall restarts send SIGTERM, then SIGKILL after this long. */
  stopGraceMs?: number;
  /** Larger frames are dropped (a corrupt stream could otherwise grow one frame without bound). */
  maxFrameBytes?: number;
}

export const supervisionDefaults = {
  stallTimeoutMs: 10_000,
  restartInitialMs: 1_000,
  restartMaxMs: 30_000,
  stopGraceMs: 2_000,
  maxFrameBytes: defaultMaxFrameBytes,
} as const satisfies Required<SupervisionOptions>;

/** Number of stderr lines kept for lastError. */
const stderrLines = 8;

export interface ProcessCommand {
  file: string;
  args: string[];
}

export interface ProcessSourceSpec {
  name: string;
  kind: FrameSourceKind;
  /** Called before each start; may probe the hardware. */
  command(signal: AbortSignal): Promise<ProcessCommand>;
  /** Appended to the error when the program is not installed. */
  installHint: string;
  /** Extra advice after the process failed, when something about the machine explains it. */
  failureHint?(): string | undefined;
  /** The process writes raw frames of this layout; without it, an MJPEG stream. */
  raw?: RawLayout;
  supervision: SupervisionOptions;
}

/**
 * A long-running capture process writing an MJPEG or raw video stream to stdout, split into frames and
 * restarted when it exits or stalls: at once (restartInitialMs) when it had delivered frames,
 * with a doubling delay only while runs in a row deliver none.
 */
export class SupervisedProcessSource implements FrameSource {
  readonly name: string;
  readonly kind: FrameSourceKind;
  private readonly spec: ProcessSourceSpec;
  private readonly options: Required<SupervisionOptions>;
  private readonly splitter: JpegSplitter | RawFrameSplitter;
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private onFrame: FrameHandler | undefined;
  private state: CaptureState = 'stopped';
  private child: ChildProcess | undefined;
  private childClosed: Promise<void> = Promise.resolve();
  private framesThisRun = 0;
  private stalled = false;
  private stderrTail: string[] = [];
  private stallTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  /** The delay of the last restart; 0 before any. */
  private lastDelayMs = 0;
  private seq = 0;
  private restarts = 0;
  private lastFrameAt: number | null = null;
  private lastError: string | null = null;
  private stopping: Promise<void> | undefined;
  private markEnded!: () => void;
  private readonly endedPromise = new Promise<void>((resolve) => (this.markEnded = resolve));

  constructor(spec: ProcessSourceSpec) {
    this.spec = spec;
    this.name = spec.name;
    this.kind = spec.kind;
    this.options = supervisionSettings(spec.supervision);
    this.splitter = spec.raw ? new RawFrameSplitter(spec.raw) : new JpegSplitter(this.options.maxFrameBytes);
    this.log = createLogger('capture').child(spec.name);
  }

  async start(onFrame: FrameHandler): Promise<void> {
    if (this.onFrame) throw new Error(`frame source ${this.name} was already started`);
    this.onFrame = onFrame;
    if (this.stopping) return;
    this.state = 'starting';
    await this.launch();
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutDown();
    return this.stopping;
  }

  ended(): Promise<void> {
    return this.endedPromise;
  }

  status(): CaptureStatus {
    return {
      source: this.name,
      kind: this.kind,
      state: this.state,
      framesReceived: this.seq,
      framesDropped: this.splitter.framesDropped,
      restarts: this.restarts,
      lastFrameAt: this.lastFrameAt,
      lastError: this.lastError,
      splitter: { ...this.splitter.stats },
    };
  }

  private async shutDown(): Promise<void> {
    this.abort.abort();
    clearTimeout(this.restartTimer);
    clearTimeout(this.stallTimer);
    if (this.child) this.terminate(this.child);
    await this.childClosed;
    this.state = 'stopped';
    this.markEnded();
  }

  private async launch(): Promise<void> {
    let command: ProcessCommand;
    try {
      command = await this.spec.command(this.abort.signal);
    } catch (err) {
      if (this.stopping) return;
      this.lastError = errorText(err);
      this.scheduleRestart();
      return;
    }
    if (this.stopping) return;

    const child = spawn(command.file, command.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.framesThisRun = 0;
    this.stalled = false;
    this.stderrTail = [];
    this.log.info('capture process starting', { command: [command.file, ...command.args].join(' ') });

    let spawnError: NodeJS.ErrnoException | undefined;
    child.on('error', (err: NodeJS.ErrnoException) => (spawnError ??= err));
    child.stdout!.on('data', (chunk: Buffer) => this.receive(chunk));
    createInterface({ input: child.stderr! }).on('line', (line) => this.keepStderr(line));
    this.childClosed = new Promise((resolve) => {
      child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
        this.exited(command, code, signal, spawnError);
        resolve();
      });
    });
    this.stallTimer = setTimeout(() => this.stall(child), this.options.stallTimeoutMs);
  }

  private receive(chunk: Buffer): void {
    for (const data of this.splitter.push(chunk)) {
      this.seq += 1;
      this.framesThisRun += 1;
      this.lastFrameAt = Date.now();
      this.stallTimer?.refresh();
      if (this.state !== 'running' && !this.stopping) this.state = 'running';
      if (this.stopping) continue;
      try {
        // Not awaited: a live camera cannot wait for the consumer (see FrameHandler).
        const delivered = this.onFrame!({ seq: this.seq, capturedAt: this.lastFrameAt, data, origin: this.name });
        if (delivered) delivered.catch((err: unknown) => this.handlerFailed(err));
      } catch (err) {
        this.handlerFailed(err);
      }
    }
  }

  private handlerFailed(err: unknown): void {
    this.log.error('frame handler failed', { error: errorText(err) });
  }

  private keepStderr(line: string): void {
    const trimmed = line.trim();
    if (!trimmed) return;
    this.stderrTail.push(trimmed);
    if (this.stderrTail.length > stderrLines) this.stderrTail.shift();
  }

  private stall(child: ChildProcess): void {
    this.stalled = true;
    this.lastError = `no frame for ${this.options.stallTimeoutMs} ms${this.stderrSuffix()}`;
    this.log.warn('capture stalled, restarting', { lastError: this.lastError });
    this.terminate(child);
  }

  /** SIGTERM first so the camera is released cleanly, SIGKILL if it does not exit. */
  private terminate(child: ChildProcess): void {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), this.options.stopGraceMs);
    child.once('close', () => clearTimeout(killer));
  }

  private exited(command: ProcessCommand, code: number | null, signal: NodeJS.Signals | null, spawnError: NodeJS.ErrnoException | undefined): void {
    clearTimeout(this.stallTimer);
    this.child = undefined;
    this.splitter.reset();
    if (this.stopping) return;

    if (spawnError?.code === 'ENOENT') {
      this.lastError = `${command.file} not found on PATH; ${this.spec.installHint}`;
    } else if (spawnError) {
      this.lastError = `cannot run ${command.file}: ${spawnError.message}`;
    } else if (!this.stalled) {
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const hint = this.spec.failureHint?.();
      this.lastError = `${command.file} ${how}${this.stderrSuffix()}${hint ? `; ${hint}` : ''}`;
    }
    this.scheduleRestart(this.framesThisRun > 0);
  }

  /** `delivered`: the run that ended gave frames (a command that could not even be built gave none). */
  private scheduleRestart(delivered = false): void {
    this.state = 'restarting';
    const delay = restartDelay(this.lastDelayMs, delivered, this.options);
    this.lastDelayMs = delay;
    this.log.warn('capture process restarting', { inMs: delay, lastError: this.lastError });
    this.restartTimer = setTimeout(() => {
      this.restarts += 1;
      void this.launch();
    }, delay);
  }

  private stderrSuffix(): string {
    return this.stderrTail.length > 0 ? `: ${this.stderrTail.join(' | ')}` : '';
  }
}

/**
 * The wait before the next start. A camera that delivered frames since the last failure works
 * (a hiccup, a loose cable): back after restartInitialMs, however often it happens. Only runs in a
 * row without any frame (unplugged, busy, wrong device) double the wait, up to restartMaxMs.
 */
export function restartDelay(previousMs: number, delivered: boolean, options: Pick<Required<SupervisionOptions>, 'restartInitialMs' | 'restartMaxMs'>): number {
  if (delivered || previousMs === 0) return options.restartInitialMs;
  return Math.min(previousMs * 2, options.restartMaxMs);
}

/** Lets the config layer pass `undefined` for "use the default". */
export function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}

/** Defaults filled in, and only the supervision fields (sources pass their whole options object). */
function supervisionSettings(options: SupervisionOptions): Required<SupervisionOptions> {
  const settings: Required<SupervisionOptions> = { ...supervisionDefaults };
  for (const key of Object.keys(supervisionDefaults) as (keyof SupervisionOptions)[]) {
    const value = options[key];
    if (value === undefined) continue;
    if (!Number.isFinite(value) || value <= 0) throw new UserError(`capture ${key} must be a number > 0, got ${value}`);
    settings[key] = value;
  }
  return settings;
}
