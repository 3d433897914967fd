import { fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { UserError } from '../common/index.js';
import { unitEnvironment } from './as-shipped.js';
import { startBroker } from './broker.js';
import type { CamerasFigures, ChangeFigures, E2eReply, E2eRequest, PhaseFigures, RunFigures, SwapFigures } from './e2e-child.js';
import type { BenchSettings } from './settings.js';
import { round, roundDistribution, type Distribution } from './stats.js';

/** A run's figures as reported: the child's, rounded. */
type E2eRun = RunFigures;

export interface E2eSection {
  /** Replay at maximum rate: the daemon's throughput. Latency includes waiting in the full frame queue. */
  framesPerSecond: number;
  latencyMs: Distribution;
  saturated: E2eRun;
  /** Replay at half that rate: latency with the queue nearly empty. */
  paced: E2eRun;
  /** Max rate again with the database on tmpfs (no fsync cost): what durable events cost, by difference. Null without /dev/shm. */
  volatileState: E2eRun | null;
  /**
   * Max rate on the sample line as it runs: its labelled references and the bundle's calibrated
   * threshold, so only the anomalies (about a tenth) become events. Null without references
   * (`--frames` given without `--references`).
   */
  sampleLine: E2eRun | null;
  settings: {
    model: string;
    precision: string;
    provider: string;
    threads: number;
    workers: number;
    maxBatch: number;
    maxWaitMs: number;
    queueSize: number;
    inFlight: number;
    references: number;
    index: string;
    broker: string;
    /** Where the daemon's database lived ($TMPDIR): each event commits with fsync there. */
    stateDir: string;
    durationS: number;
  };
  /** Daemon.start to running (opening the model, enrolling 200 reference frames). */
  startMs: number;
  /** Several GStreamer test cameras through one pipeline, at full rate. */
  cameras: CamerasSection;
}

export interface CamerasSection {
  cameras: number;
  fpsEach: number;
  frameSize: string;
  /** Frames decided per second, all cameras together. */
  framesPerSecond: number;
  perCamera: { camera: string; framesPerSecond: number; framesDropped: number }[];
  /** (largest share - smallest) / largest, in %: 0 when every camera gets the same. */
  shareSpreadPct: number;
  memory: MemorySection;
}

export interface MemorySection {
  /** The daemon process's malloc: jemalloc as the systemd unit preloads it, or the C library's when it is not installed. */
  allocator: string;
  /** Median RSS of the daemon process over the measured full-rate run. */
  steadyMb: number;
  /** Largest distance of any sample from the steady value, in % of it. */
  maxDeviationPct: number;
  /** That sample: its RSS, and when it was taken (seconds after the first sample), so warm-up tells from growth. */
  largestDeviation: { mb: number; atS: number };
  /** Mean of the last tenth of the run minus mean of the first tenth, in % of steady. */
  driftPct: number;
  /** Least-squares slope of RSS over the run. */
  slopeMbPerMin: number;
  samples: number;
  durationS: number;
}

/**
 * The daemon at full rate while its model changes. Latency is frame read -> decision (not PUBACK).
 * A swap's figures cover its window, 0.5 s before the call to 1 s after the reply.
 */
export interface SwapSection {
  /** Phase A: no change, the pushed model deciding. */
  maxLatencyMsWithoutSwap: number;
  p99LatencyMsWithoutSwap: number;
  /** Longest latency in any swap's window (phase B: activate the starting model, then roll back). */
  maxLatencyMsDuringSwap: number;
  /** The longest swap, call to reply (each is in `swaps`). */
  swapDurationMs: number;
  /** maxLatencyMsDuringSwap / maxLatencyMsWithoutSwap. */
  pauseRatio: number;
  /** Longest latency in the push's window: unpack, verify, open, re-embed every reference, gate, swap, on the cores deciding frames. */
  maxLatencyMsDuringPush: number;
  pushDurationMs: number;
  framesPerSecondWithoutSwap: number;
  framesPerSecondWithSwaps: number;
  withoutSwap: PhaseFigures;
  withSwaps: PhaseFigures;
  swaps: ChangeFigures[];
  push: ChangeFigures & { references: number; gate: string };
  settings: { started: string; pushed: string; phaseS: number };
}

/** Runs the real daemon against a private mosquitto, in a child process; see e2e-child.ts. */
export async function benchE2e(settings: BenchSettings): Promise<{ e2e: E2eSection; memory: MemorySection; swap: SwapSection }> {
  const broker = await startBroker();
  try {
    const request: E2eRequest = {
      bundleDir: settings.int8Dir,
      framesDir: settings.framesDir,
      brokerUrl: broker.url,
      inference: settings.inference,
      roi: settings.roi,
      queueSize: settings.queueSize,
      warmupS: settings.e2e.warmupS,
      durationS: settings.e2e.durationS,
      pacedS: settings.quick ? 1 : Math.min(20, settings.e2e.durationS),
      volatileDir: existsSync('/dev/shm') ? '/dev/shm' : null,
      lineReferencesDir: settings.referencesDir,
      cameras: 4,
      swap: { pushBundleDir: settings.fp32Dir, phaseS: settings.swap.phaseS },
    };
    const reply = await runChild(request);
    if (!reply.ok) throw new UserError(`the end-to-end run failed: ${reply.error}`, reply.hint ?? 'see the log lines above');
    const inf = settings.inference;
    const run = (r: RunFigures): E2eRun => ({
      fps: r.fps,
      framesPerSecond: round(r.framesPerSecond),
      eventsPerSecond: round(r.eventsPerSecond),
      latencyMs: roundDistribution(r.latencyMs),
      framesDropped: r.framesDropped,
      backlogAtEnd: r.backlogAtEnd,
      cpuMsPerFrame: round(r.cpuMsPerFrame),
    });
    const saturated = run(reply.saturated);
    const e2e: E2eSection = {
      framesPerSecond: saturated.framesPerSecond,
      latencyMs: saturated.latencyMs,
      saturated,
      paced: run(reply.paced),
      volatileState: reply.volatile && run(reply.volatile),
      sampleLine: reply.sampleLine && run(reply.sampleLine),
      settings: {
        model: reply.daemon.model,
        precision: reply.daemon.precision,
        provider: reply.daemon.provider,
        threads: inf.threads,
        workers: inf.workers,
        maxBatch: inf.maxBatch,
        maxWaitMs: inf.maxWaitMs,
        queueSize: settings.queueSize,
        inFlight: settings.inFlight,
        references: reply.daemon.references,
        index: reply.daemon.index,
        broker: `mosquitto ${broker.version} on 127.0.0.1`,
        stateDir: tmpdir(),
        durationS: settings.e2e.durationS,
      },
      startMs: reply.daemon.startMs,
      cameras: camerasFigures(reply.cameras, reply.daemon.allocator),
    };
    const inWindow = reply.rss.filter((s) => s.atS >= reply.measuredFromS && s.atS <= reply.measuredToS);
    return { e2e, memory: memoryFigures(inWindow, reply.measuredToS - reply.measuredFromS, reply.daemon.allocator), swap: swapFigures(reply.swap, settings.swap.phaseS) };
  } finally {
    await broker.stop();
  }
}

function runChild(request: E2eRequest): Promise<E2eReply> {
  return new Promise((resolve, reject) => {
    // The unit's allocator, its options and the JS heap limit, so the memory figures are those of the daemon as shipped.
    const env = { ...process.env, ...unitEnvironment() };
    const child = fork(new URL('./e2e-child.js', import.meta.url), [], { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let reply: E2eReply | undefined;
    child.once('message', (message: E2eReply) => (reply = message));
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (reply) resolve(reply);
      else reject(new Error(`the end-to-end child process exited (${signal ?? `code ${code}`}) without a result`));
    });
    child.send(request);
  });
}

function swapFigures(s: SwapFigures, phaseS: number): SwapSection {
  const phase = (p: PhaseFigures): PhaseFigures => ({ seconds: round(p.seconds), framesPerSecond: round(p.framesPerSecond), latencyMs: roundDistribution(p.latencyMs), framesDropped: p.framesDropped });
  const change = <C extends ChangeFigures>(c: C): C => ({ ...c, durationMs: round(c.durationMs) });
  const swaps = s.swaps.map(change);
  const duringSwap = Math.max(...swaps.map((c) => c.maxLatencyMs));
  const withoutSwap = phase(s.withoutSwap);
  const withSwaps = phase(s.withSwaps);
  const push = change(s.push);
  return {
    maxLatencyMsWithoutSwap: withoutSwap.latencyMs.max,
    p99LatencyMsWithoutSwap: withoutSwap.latencyMs.p99,
    maxLatencyMsDuringSwap: duringSwap,
    swapDurationMs: Math.max(...swaps.map((c) => c.durationMs)),
    pauseRatio: round(duringSwap / s.withoutSwap.latencyMs.max),
    maxLatencyMsDuringPush: push.maxLatencyMs,
    pushDurationMs: push.durationMs,
    framesPerSecondWithoutSwap: withoutSwap.framesPerSecond,
    framesPerSecondWithSwaps: withSwaps.framesPerSecond,
    withoutSwap,
    withSwaps,
    swaps,
    push,
    settings: { started: s.started, pushed: s.push.key, phaseS },
  };
}

function camerasFigures(c: CamerasFigures, allocator: string): CamerasSection {
  const rates = c.perCamera.map((p) => p.framesPerSecond);
  return {
    cameras: c.cameras,
    fpsEach: c.fpsEach,
    frameSize: `${c.width}x${c.height}`,
    framesPerSecond: round(c.framesPerSecond),
    perCamera: c.perCamera.map((p) => ({ ...p, framesPerSecond: round(p.framesPerSecond) })),
    shareSpreadPct: round(((Math.max(...rates) - Math.min(...rates)) / Math.max(...rates)) * 100),
    memory: memoryFigures(c.rss, c.seconds, allocator),
  };
}

function memoryFigures(samples: { atS: number; bytes: number }[], durationS: number, allocator: string): MemorySection {
  const mb = samples.map((s) => s.bytes / 2 ** 20);
  const sorted = [...mb].sort((a, b) => a - b);
  const steady = sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
  const tenth = Math.max(1, Math.floor(mb.length / 10));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const t = samples.map((s) => s.atS / 60);
  const tMean = mean(t);
  const mMean = mean(mb);
  const slope = t.reduce((acc, ti, i) => acc + (ti - tMean) * (mb[i]! - mMean), 0) / t.reduce((acc, ti) => acc + (ti - tMean) ** 2, 0);
  // Found apart from the maximum below, so the bench test can hold the one against the other.
  const farthest = mb.reduce((best, m, i) => (Math.abs(m - steady) > Math.abs(mb[best]! - steady) ? i : best), 0);
  return {
    allocator,
    steadyMb: round(steady),
    maxDeviationPct: round(Math.max(...mb.map((m) => (Math.abs(m - steady) / steady) * 100))),
    largestDeviation: { mb: round(mb[farthest]!), atS: round(samples[farthest]!.atS - samples[0]!.atS) },
    driftPct: round(((mean(mb.slice(-tenth)) - mean(mb.slice(0, tenth))) / steady) * 100),
    slopeMbPerMin: round(slope),
    samples: mb.length,
    durationS: round(durationS),
  };
}
