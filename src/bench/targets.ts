import { defaultVectorIndexOptions } from '../knn/index.js';
import type { BenchDocument, Target } from './document.js';
import type { MemorySection } from './e2e.js';
import { round } from './stats.js';

export function targets(doc: Omit<BenchDocument, 'targets'>): Target[] {
  const { encoder, preprocess, e2e, knn, memory, swap } = doc;
  const ceiling = Math.min(encoder.daemonSettings.imagesPerSecond, preprocess.imagesPerSecond);
  const overlap = e2e.framesPerSecond / ceiling;
  // Perfect overlap still needs each frame's CPU of both stages: the cores give at most this rate.
  // The intake's figure is the ceiling's run: the sample frames on the fast path.
  const encoderCpuMs = encoder.daemonSettings.cpuMsPerImage;
  const intakeCpuMs = preprocess.runs[1]!.cpuMsPerImage;
  const cpuBound = round((doc.machine.cores * 1000) / (encoderCpuMs + intakeCpuMs));
  const cpuBoundText = `; the stages' own CPU per frame alone (encoder ${encoderCpuMs} + intake ${intakeCpuMs} ms) lets ${doc.machine.cores} cores decide at most ${cpuBound} frames/s, ${round(cpuBound / ceiling)} of the ceiling`;
  const largest = knn.sizes[knn.sizes.length - 1]!;
  const at = `at ${largest.references} references${doc.quick ? ' (quick run: not 100k)' : ''}`;
  const exactBelow = defaultVectorIndexOptions.exactBelow;
  const crossoverRatio = exactBelow / knn.crossover.references;
  return [
    {
      name: 'e2e overlaps the stages (every frame an event)',
      met: overlap >= 0.9,
      value: round(overlap),
      goal: '>= 0.9 x min(encoder alone, preprocess alone)',
      // Each stage alone already uses every core, so on a small CPU they can only share it: the
      // harmonic bound says how far the measured rate is from that, apart from any overlap.
      detail: `${e2e.framesPerSecond} frames/s vs min(encoder ${encoder.daemonSettings.imagesPerSecond}, preprocess ${preprocess.imagesPerSecond}) images/s; the two stages sharing ${doc.machine.cores} cores without overlap would give ${round(1 / (1 / encoder.daemonSettings.imagesPerSecond + 1 / preprocess.imagesPerSecond))}${cpuBoundText}${e2e.volatileState ? `; with the database on tmpfs (no fsync) ${e2e.volatileState.framesPerSecond} frames/s` : ''}`,
    },
    ...(e2e.sampleLine
      ? [
          {
            name: 'e2e on the sample line',
            met: e2e.sampleLine.framesPerSecond / ceiling >= 0.9,
            value: round(e2e.sampleLine.framesPerSecond / ceiling),
            goal: '>= 0.9 x min(encoder alone, preprocess alone), only anomalies as events',
            detail: `${e2e.sampleLine.framesPerSecond} frames/s (${e2e.sampleLine.eventsPerSecond} events/s, ${e2e.sampleLine.cpuMsPerFrame} CPU ms per frame) vs min(encoder ${encoder.daemonSettings.imagesPerSecond}, preprocess ${preprocess.imagesPerSecond}) images/s; every frame an event: ${e2e.framesPerSecond} frames/s, ${e2e.saturated.cpuMsPerFrame} CPU ms per frame${cpuBoundText}`,
          },
        ]
      : []),
    ...(
      [
        ['sample frames', preprocess.speedup.sampleFrames, preprocess.runs[0]!, preprocess.runs[1]!],
        ['640x480 camera JPEGs', preprocess.speedup.cameraFrames, preprocess.runs[2]!, preprocess.runs[3]!],
      ] as const
    ).map(([what, speedup, before, now]) => ({
      name: `intake speed-up, ${what}`,
      met: speedup >= 5,
      value: speedup,
      goal: '>= 5 x the sharp path (decode + crop + resize + normalise)',
      detail: `${now.imagesPerSecond} vs ${before.imagesPerSecond} images/s (${now.frames}); CPU per image ${now.cpuMsPerImage} vs ${before.cpuMsPerImage} ms (${round(before.cpuMsPerImage / now.cpuMsPerImage)}x)`,
    })),
    {
      name: 'INT8 encoder speed-up',
      met: encoder.int8Speedup >= 3,
      value: encoder.int8Speedup,
      goal: '>= 3 x FP32 images/s',
      detail: `INT8 ${encoder.int8.best.imagesPerSecond} (batch ${encoder.int8.best.batch}) vs FP32 ${encoder.fp32.best.imagesPerSecond} (batch ${encoder.fp32.best.batch}) images/s; CPU INT8 flags: ${encoder.int8CpuFlags.join(' ') || 'none (no VNNI, AMX or dot product)'}`,
    },
    {
      name: 'exact/HNSW switch at the crossover',
      // The crossover moves with load and CPU; within a factor of 2 either side is "at" it.
      met: crossoverRatio >= 0.5 && crossoverRatio <= 2,
      value: round(crossoverRatio),
      goal: 'default exactBelow within 2x of the measured crossover',
      detail: `exactBelow ${exactBelow}, measured crossover ${knn.crossover.references} (${knn.crossover.note})`,
    },
    {
      name: 'HNSW recall@10',
      met: largest.recallAt10 >= 0.99,
      value: largest.recallAt10,
      goal: '>= 0.99 at 100k',
      detail: `${at}, ef ${knn.options.ef}, M ${knn.options.M}`,
    },
    {
      name: 'HNSW query time',
      met: largest.hnswMs.p50 <= 0.2,
      value: largest.hnswMs.p50,
      goal: '<= 0.2 ms (median) at 100k',
      detail: `${at}: median ${largest.hnswMs.p50} ms, mean ${largest.hnswMs.mean} ms, p99 ${largest.hnswMs.p99} ms`,
    },
    {
      name: 'ready to classify',
      met: knn.ready.wallMs <= 1000,
      value: knn.ready.wallMs,
      goal: '<= 1000 ms from process start with 100k references',
      detail: `${knn.ready.references} references, index ${knn.ready.mode} loaded from ${knn.ready.loadedFrom}, ${knn.ready.allocator}, hnswlib loader ${knn.ready.loader}; opening took ${knn.ready.openMs} ms of it, ${knn.ready.cpuMs} ms of CPU in all`,
    },
    {
      name: 'RSS steady',
      met: memory.maxDeviationPct <= 5,
      value: memory.maxDeviationPct,
      goal: 'within 5% of steady over a 10-minute full-rate run',
      detail: rssDetail(memory),
    },
    {
      name: 'several cameras: aggregate',
      met: e2e.cameras.framesPerSecond >= 0.9 * e2e.framesPerSecond,
      value: round(e2e.cameras.framesPerSecond / e2e.framesPerSecond),
      goal: '>= 0.9 x the single-camera e2e frames/s',
      detail: `${e2e.cameras.cameras} GStreamer test cameras (${e2e.cameras.frameSize}, ${e2e.cameras.fpsEach} fps each): ${e2e.cameras.framesPerSecond} frames/s together vs ${e2e.framesPerSecond} from one replay at max rate`,
    },
    {
      name: 'several cameras: fair shares',
      // Shares only mean something at full rate: every camera must have lost frames to a full queue.
      met: e2e.cameras.shareSpreadPct <= 20 && e2e.cameras.perCamera.every((c) => c.framesDropped > 0),
      value: e2e.cameras.shareSpreadPct,
      goal: 'per-camera frames/s within 20% of each other at full rate (every camera dropping frames)',
      detail: `${e2e.cameras.perCamera.map((c) => `${c.camera} ${c.framesPerSecond} frames/s (${c.framesDropped} dropped)`).join(', ')}${e2e.cameras.perCamera.some((c) => c.framesDropped === 0) ? '; not at full rate: a camera dropped nothing' : ''}`,
    },
    {
      name: 'RSS steady with several cameras',
      met: e2e.cameras.memory.maxDeviationPct <= 5,
      value: e2e.cameras.memory.maxDeviationPct,
      goal: 'within 5% of steady over a 10-minute full-rate run with 4 cameras',
      detail: rssDetail(e2e.cameras.memory),
    },
    {
      name: 'swap pause',
      met: swap.pauseRatio <= 2,
      value: swap.pauseRatio,
      goal: '<= 2 x the max frame-to-decision latency without a swap',
      detail: `max ${swap.maxLatencyMsDuringSwap} ms around a swap (${swap.swaps.map((c) => `${c.action} ${c.durationMs} ms`).join(', ')}) vs ${swap.maxLatencyMsWithoutSwap} ms without (p99 ${swap.p99LatencyMsWithoutSwap} ms); a push (re-embedding ${swap.push.references} references on the same cores, ${swap.pushDurationMs} ms) reached ${swap.maxLatencyMsDuringPush} ms`,
    },
  ];
}

function rssDetail(memory: MemorySection): string {
  const { mb, atS } = memory.largestDeviation;
  return `${memory.durationS} s run${memory.durationS < 600 ? ' (shorter than 10 min: pass --duration 600)' : ''}: steady ${memory.steadyMb} MB, farthest ${mb} MB at ${atS} s, drift ${memory.driftPct}%, slope ${memory.slopeMbPerMin} MB/min`;
}
