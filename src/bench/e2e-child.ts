/**
 * The end-to-end run, in its own process so its RSS is the daemon's alone (not the bench's
 * buffers of the other sections). The parent sends an E2eRequest over IPC and gets an E2eReply.
 */
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, errorText, setLogFormat, setLogLevel, UserError } from '../common/index.js';
import { configSchema, replayFpsMax, type Config } from '../config/index.js';
import { Daemon } from '../daemon/index.js';
import { Outbox, type AnomalyEvent } from '../events/index.js';
import { generateKeyPair, packBundle, signBundle } from '../inference/index.js';
import type { DecidedFrame } from '../pipeline/index.js';
import { readImageHeader } from '../preprocess/index.js';
import { allocator } from './as-shipped.js';
import { distribution, type Distribution } from './stats.js';

export interface E2eRequest {
  bundleDir: string;
  framesDir: string;
  brokerUrl: string;
  inference: Config['inference'];
  roi: Config['preprocess']['roi'];
  queueSize: number;
  warmupS: number;
  durationS: number;
  /** Seconds of the second, paced run (at half the measured rate), which shows latency without queueing. */
  pacedS: number;
  /** For a third run at full rate with the database on this tmpfs folder (fsync free), or null to skip it. */
  volatileDir: string | null;
  /**
   * The sample line's labelled references (good and defect folders): a run at full rate with them
   * enrolled and the bundle's calibrated threshold, so only the anomalies become events. Null: no references, no such run.
   */
  lineReferencesDir: string | null;
  /** GStreamer test cameras run together through one pipeline, for `durationS` like the saturated run. */
  cameras: number;
  /** The swap run: this bundle is pushed (a signed copy with another version), then swapped out and back; `phaseS` per measured phase. */
  swap: { pushBundleDir: string; phaseS: number };
}

export interface RunFigures {
  fps: number;
  /** Frames decided per second in the measured window. */
  framesPerSecond: number;
  /** Events acknowledged (PUBACK) per second in the window. */
  eventsPerSecond: number;
  /** Frame arrival (the replay source read it) to the event's PUBACK, ms (1 ms resolution: capturedAt is Date.now()). */
  latencyMs: Distribution;
  framesDropped: number;
  backlogAtEnd: number;
  /** CPU time of the daemon's process (every thread: main, encoder workers, libuv pool) per frame decided. */
  cpuMsPerFrame: number;
}

/** Frame read (capturedAt) to decision (handed to the pipeline's consumers), ms, over a phase of the swap run. */
export interface PhaseFigures {
  seconds: number;
  framesPerSecond: number;
  latencyMs: Distribution;
  framesDropped: number;
}

/** One model change at full rate, judged over its window: 0.5 s before the call to 1 s after the reply. */
export interface ChangeFigures {
  action: 'push' | 'activate' | 'rollback';
  /** The model it made active. */
  key: string;
  /** From the call to its reply. */
  durationMs: number;
  framesDecided: number;
  /** Longest frame-to-decision latency of the frames decided in the window. */
  maxLatencyMs: number;
  framesDropped: number;
}

/** Several GStreamer test cameras (videotestsrc) at full rate through one daemon. */
export interface CamerasFigures {
  cameras: number;
  /** Each camera's rate: each alone offers the single camera's saturated rate (together 4x), so every queue overflows while the machine's load moves. */
  fpsEach: number;
  /** The frames' size: the sample frames'. */
  width: number;
  height: number;
  framesPerSecond: number;
  perCamera: { camera: string; framesPerSecond: number; framesDropped: number }[];
  seconds: number;
  rss: { atS: number; bytes: number }[];
}

export interface SwapFigures {
  started: string;
  /** Phase A: full rate, the pushed model active, no change. */
  withoutSwap: PhaseFigures;
  /** Phase B: as long again, with an activation of the starting model and a rollback in it. */
  withSwaps: PhaseFigures;
  swaps: ChangeFigures[];
  push: ChangeFigures & { references: number; gate: string };
}

export type E2eReply =
  | {
      ok: true;
      saturated: RunFigures;
      paced: RunFigures;
      volatile: RunFigures | null;
      sampleLine: RunFigures | null;
      cameras: CamerasFigures;
      swap: SwapFigures;
      daemon: { model: string; precision: string; provider: string; references: number; index: string; startMs: number; allocator: string };
      rss: { atS: number; bytes: number }[];
      measuredFromS: number;
      measuredToS: number;
    }
  | { ok: false; error: string; hint?: string };

// Instrumentation, not a stand-in: the real Outbox runs unchanged; these wrappers note when each
// event was stored (with its frame's arrival time) and when its row is acknowledged, which the
// Publisher does in the same turn of the event loop as the broker's PUBACK (acks of a turn are deleted together).
// A histogram of 1 ms buckets, allocated once, so a 10-minute run at full rate does not grow the
// very RSS it measures.
const arrivalOfSeq = new Map<number, number>();
const histogram = new Uint32Array(120_000);
const originalAppend = Outbox.prototype.append;
const originalAck = Outbox.prototype.ack;
Outbox.prototype.append = function (this: Outbox, event: AnomalyEvent, topic?: string): number {
  const seq = originalAppend.call(this, event, topic);
  arrivalOfSeq.set(seq, Date.parse(event.capturedAt));
  return seq;
};
Outbox.prototype.ack = function (this: Outbox, seqs: readonly number[]): number {
  const removed = originalAck.call(this, seqs);
  const now = Date.now();
  for (const seq of seqs) {
    const arrival = arrivalOfSeq.get(seq);
    if (arrival === undefined) continue;
    histogram[Math.min(histogram.length - 1, Math.max(0, now - arrival))]!++;
    arrivalOfSeq.delete(seq);
  }
  return removed;
};

const sleep = (s: number) => new Promise((resolve) => setTimeout(resolve, s * 1000));

async function main(request: E2eRequest): Promise<E2eReply> {
  // Every frame becomes an event: per-event info lines would measure the terminal, not the daemon.
  setLogLevel('warn');
  setLogFormat('json');
  const log = createLogger('bench.e2e');
  const work = mkdtempSync(join(tmpdir(), 'linewatch-bench-e2e-'));
  try {
    // References: the first 200 frames, enrolled by the daemon itself at its first start.
    const references = join(work, 'references', 'good');
    mkdirSync(references, { recursive: true });
    const frames = readdirSync(request.framesDir).filter((n) => /\.(jpe?g|png)$/i.test(n)).sort();
    for (const name of frames.slice(0, 200)) {
      copyFileSync(join(request.framesDir, name), join(references, name));
    }
    const common = (stateDir = join(work, 'state'), models: Partial<Config['models']> = {}, line = false) => ({
      stateDir,
      model: request.bundleDir,
      inference: request.inference,
      // threshold 0: every frame is an anomaly, so every frame travels to the broker. The sample
      // line keeps the bundle's calibrated threshold and its labelled references.
      knn: line ? {} : { threshold: 0 },
      enroll: { folder: line ? request.lineReferencesDir : join(work, 'references') },
      mqtt: { url: request.brokerUrl, clientId: `linewatch-bench-${process.pid}`, statsIntervalS: 3600 },
      http: { enabled: false },
      models,
      log: { level: 'warn', format: 'json' },
    });
    const config = (fps: number, stateDir?: string, models?: Partial<Config['models']>, line?: boolean): Config =>
      configSchema.parse({
        ...common(stateDir, models, line),
        capture: { source: 'replay', queueSize: request.queueSize, replay: { folder: request.framesDir, fps, loop: true } },
        preprocess: { roi: request.roi },
      });

    const t0 = performance.now();
    const rss: { atS: number; bytes: number }[] = [];
    const sampleEvery = Math.min(5, Math.max(0.25, request.durationS / 120));
    const sampler = setInterval(() => rss.push({ atS: (performance.now() - t0) / 1000, bytes: process.memoryUsage.rss() }), sampleEvery * 1000);

    const started = performance.now();
    let daemon = await Daemon.start(config(0), log);
    const startMs = performance.now() - started;
    const status = daemon.status();
    const info = {
      model: `${status.model.name}@${status.model.version}`,
      precision: status.model.precision,
      provider: status.model.provider,
      references: status.references.searchable,
      index: status.references.index,
      startMs: Math.round(startMs),
      allocator: allocator(),
    };
    await sleep(request.warmupS);
    const measuredFromS = (performance.now() - t0) / 1000;
    const saturated = await measure(daemon, 0, request.durationS);
    const measuredToS = (performance.now() - t0) / 1000;
    clearInterval(sampler);
    await daemon.stop({ flushTimeoutMs: 10_000 });

    // Half the saturated rate: the queue stays short, so latency is the pipeline's and the broker's.
    const fps = Math.min(replayFpsMax, Math.max(1, Math.round(saturated.framesPerSecond / 2)));
    daemon = await Daemon.start(config(fps), log);
    await sleep(Math.min(request.warmupS, 2));
    const paced = await measure(daemon, fps, request.pacedS);
    await daemon.stop({ flushTimeoutMs: 10_000 });

    // The same full-rate run with the database on tmpfs, where a commit's fsync costs nothing:
    // the difference from the first run is what durable events cost. Not a way to run the daemon.
    let volatile: RunFigures | null = null;
    if (request.volatileDir) {
      const volatileState = mkdtempSync(join(request.volatileDir, 'linewatch-bench-e2e-'));
      try {
        daemon = await Daemon.start(config(0, volatileState), log);
        await sleep(Math.min(request.warmupS, 2));
        volatile = await measure(daemon, 0, request.pacedS);
        await daemon.stop({ flushTimeoutMs: 10_000 });
      } finally {
        rmSync(volatileState, { recursive: true, force: true });
      }
    }
    let sampleLine: RunFigures | null = null;
    if (request.lineReferencesDir) {
      daemon = await Daemon.start(config(0, join(work, 'state-line'), {}, true), log);
      await sleep(Math.min(request.warmupS, 2));
      sampleLine = await measure(daemon, 0, request.pacedS);
      await daemon.stop({ flushTimeoutMs: 10_000 });
    }
    const cameras = await measureCameras(request, join(request.framesDir, frames[0]!), saturated.framesPerSecond, (fpsEach, width, height) =>
      configSchema.parse({
        ...common(),
        cameras: Array.from({ length: request.cameras }, (_, i) => ({
          camera: `cam-${i + 1}`,
          capture: { source: 'gstreamer', queueSize: request.queueSize, gstreamer: { preset: 'test', width, height, fps: fpsEach } },
          roi: request.roi,
        })),
      }),
    log);
    // Last, so the memory figures above never see a second model open.
    const trustedKeysDir = join(work, 'trusted-keys');
    const archive = await signedCopy(request.swap.pushBundleDir, join(work, 'push'), trustedKeysDir);
    daemon = await Daemon.start(config(0, join(work, 'state'), { trustedKeysDir }), log);
    let swap: SwapFigures;
    try {
      swap = await measureSwaps(daemon, archive, request.warmupS, request.swap.phaseS);
    } finally {
      await daemon.stop({ flushTimeoutMs: 10_000 });
    }
    return { ok: true, saturated, paced, volatile, sampleLine, cameras, swap, daemon: info, rss, measuredFromS, measuredToS };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function measure(daemon: Daemon, fps: number, seconds: number): Promise<RunFigures> {
  const before = daemon.status();
  const acksBefore = histogram.slice();
  const from = performance.now();
  const cpuBefore = process.cpuUsage();
  await sleep(seconds);
  const cpu = process.cpuUsage(cpuBefore);
  const elapsed = (performance.now() - from) / 1000;
  const after = daemon.status();
  const window = histogram.map((n, ms) => n - acksBefore[ms]!);
  const dropped = (s: typeof before) => s.capture.framesDropped + s.capture.droppedWhileBusy;
  const frames = after.decisions.classified - before.decisions.classified;
  return {
    fps,
    framesPerSecond: frames / elapsed,
    eventsPerSecond: window.reduce((a, b) => a + b, 0) / elapsed,
    latencyMs: histogramDistribution(window),
    framesDropped: dropped(after) - dropped(before),
    backlogAtEnd: after.events.backlog,
    cpuMsPerFrame: (cpu.user + cpu.system) / 1000 / frames,
  };
}

/**
 * Several cameras at full rate: GStreamer test cameras of the sample frames' size, each offering
 * the single camera's saturated rate, for as long as the saturated run. Each
 * camera's share comes from its own decision count; RSS is sampled throughout.
 */
async function measureCameras(request: E2eRequest, sampleFrame: string, singleFramesPerSecond: number, config: (fpsEach: number, width: number, height: number) => Config, log: ReturnType<typeof createLogger>): Promise<CamerasFigures> {
  const header = readImageHeader(readFileSync(sampleFrame));
  const [width, height] = header ? [header.width, header.height] : [112, 112];
  const fpsEach = Math.min(1000, Math.max(1, Math.ceil(singleFramesPerSecond)));
  const daemon = await Daemon.start(config(fpsEach, width, height), log);
  const rss: { atS: number; bytes: number }[] = [];
  try {
    // A gst-launch process takes its time to deliver a first frame on a busy machine: the window opens once every camera has.
    const deadline = performance.now() + 60_000;
    while (daemon.status().cameras.some((c) => c.capture.framesReceived === 0)) {
      if (performance.now() > deadline) {
        const silent = daemon.status().cameras.filter((c) => c.capture.framesReceived === 0);
        throw new UserError(`GStreamer test camera(s) ${silent.map((c) => `${c.key} (${c.capture.lastError ?? c.capture.state})`).join(', ')} delivered no frame within 60 s`, 'check that gst-launch-1.0 and the videotestsrc and jpegenc elements are installed');
      }
      await sleep(0.1);
    }
    await sleep(request.warmupS);
    const before = daemon.status().cameras;
    const from = performance.now();
    const sampleEvery = Math.min(5, Math.max(0.25, request.durationS / 120));
    const sampler = setInterval(() => rss.push({ atS: (performance.now() - from) / 1000, bytes: process.memoryUsage.rss() }), sampleEvery * 1000);
    await sleep(request.durationS);
    clearInterval(sampler);
    const seconds = (performance.now() - from) / 1000;
    const after = daemon.status().cameras;
    const dropped = (c: (typeof after)[number]) => c.capture.framesDropped + c.capture.droppedWhileBusy;
    const perCamera = after.map((c, i) => ({
      camera: c.key,
      framesPerSecond: (c.decisions.classified - before[i]!.decisions.classified) / seconds,
      framesDropped: dropped(c) - dropped(before[i]!),
    }));
    return { cameras: request.cameras, fpsEach, width, height, framesPerSecond: perCamera.reduce((sum, c) => sum + c.framesPerSecond, 0), perCamera, seconds, rss };
  } finally {
    await daemon.stop({ flushTimeoutMs: 10_000 });
  }
}

/** A copy of the bundle under another version (so it is a new model to the registry), signed with a key made here and trusted through `trustedKeysDir`. */
async function signedCopy(bundleDir: string, dir: string, trustedKeysDir: string): Promise<Buffer> {
  cpSync(bundleDir, dir, { recursive: true });
  rmSync(join(dir, 'signature.json'), { force: true });
  const manifestPath = join(dir, 'manifest.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { version: string };
  writeFileSync(manifestPath, JSON.stringify({ ...manifest, version: `${manifest.version}-bench-push` }, null, 2) + '\n');
  const key = await generateKeyPair(trustedKeysDir, 'bench');
  await signBundle(dir, key.privateKeyPath);
  return packBundle(dir);
}

/**
 * Frame-to-decision latency around model changes at full rate: a push (staging runs on the same
 * cores as the frames), then phase A without a change and phase B, as long, with an activation of
 * the starting model (still open as the previous one) and a rollback. Latency is read at the
 * decision, not the PUBACK, so the broker's delivery does not blur the pause.
 */
async function measureSwaps(daemon: Daemon, archive: Buffer, warmupS: number, phaseS: number): Promise<SwapFigures> {
  const decidedAt: number[] = [];
  const latencies: number[] = [];
  const stopProbe = daemon.onDecision((decided: DecidedFrame) => {
    const now = Date.now();
    decidedAt.push(now);
    latencies.push(now - decided.frame.capturedAt);
  });
  const between = (from: number, to: number) => latencies.filter((_, i) => decidedAt[i]! >= from && decidedAt[i]! <= to);
  const dropped = () => {
    const { capture } = daemon.status();
    return capture.framesDropped + capture.droppedWhileBusy;
  };
  const change = async (action: ChangeFigures['action'], run: () => Promise<{ key: string }>): Promise<ChangeFigures> => {
    const droppedBefore = dropped();
    const from = Date.now();
    await sleep(0.5);
    const called = performance.now();
    const { key } = await run();
    const durationMs = performance.now() - called;
    await sleep(1);
    const window = between(from, Date.now());
    return { action, key, durationMs, framesDecided: window.length, maxLatencyMs: distribution(window).max, framesDropped: dropped() - droppedBefore };
  };
  const phase = async (body: (seconds: number) => Promise<unknown>): Promise<PhaseFigures> => {
    const droppedBefore = dropped();
    const from = Date.now();
    await body(phaseS);
    const to = Date.now();
    const window = between(from, to);
    return { seconds: (to - from) / 1000, framesPerSecond: window.length / ((to - from) / 1000), latencyMs: distribution(window), framesDropped: dropped() - droppedBefore };
  };
  try {
    const started = daemon.models.active.key;
    await sleep(warmupS);
    const references = daemon.status().references.total;
    let gate = '';
    const push = await change('push', async () => {
      const pushed = await daemon.models.push(archive, { via: 'cli' });
      gate = pushed.gate.reason;
      return pushed;
    });
    // Phase A starts where the push's window ends, 1 s after its reply.
    const withoutSwap = await phase((seconds) => sleep(seconds));
    const swaps: ChangeFigures[] = [];
    const withSwaps = await phase(async (seconds) => {
      const from = performance.now();
      // Each change's window takes 1.5 s besides the change; the rest of the phase goes in three equal gaps.
      const gap = Math.max(0, seconds - 3) / 3;
      await sleep(gap);
      swaps.push(await change('activate', () => daemon.models.activate(started, { via: 'cli' })));
      await sleep(gap);
      swaps.push(await change('rollback', () => daemon.models.rollback({ via: 'cli' })));
      await sleep(Math.max(0, seconds - (performance.now() - from) / 1000));
    });
    return { started, withoutSwap, withSwaps, swaps, push: { ...push, references, gate } };
  } finally {
    stopProbe();
  }
}

function histogramDistribution(counts: Uint32Array): Distribution {
  let samples = 0;
  let sum = 0;
  let max = Number.NaN;
  counts.forEach((n, ms) => {
    samples += n;
    sum += n * ms;
    if (n > 0) max = ms;
  });
  const at = (p: number): number => {
    const rank = Math.max(1, Math.ceil((p / 100) * samples));
    let seen = 0;
    for (let ms = 0; ms < counts.length; ms++) if ((seen += counts[ms]!) >= rank) return ms;
    return Number.NaN;
  };
  return { samples, mean: samples ? sum / samples : Number.NaN, p50: at(50), p99: at(99), max };
}

process.once('message', (request: E2eRequest) => {
  main(request).then(
    (reply) => process.send!(reply, () => process.exit(0)),
    (err: unknown) => {
      const hint = (err as { hint?: string }).hint;
      process.send!({ ok: false, error: errorText(err), ...(hint ? { hint } : {}) } satisfies E2eReply, () => process.exit(1));
    },
  );
});
