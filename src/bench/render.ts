import type { BenchDocument } from './document.js';
import type { Distribution } from './stats.js';

/** The bench document as tables for a terminal (and for pasting into the README). */
export function renderText(doc: BenchDocument): string {
  const m = doc.machine;
  const lat = (d: Distribution) => `${d.p50} / ${d.p99}`;
  const lines: string[] = [
    `linewatch bench${doc.quick ? ' --quick (proves the bench works; figures not worth quoting)' : ''}`,
    `command: ${doc.command}`,
    `machine: ${m.cpu}, ${m.cores} cores, load ${m.loadBefore} before / ${m.loadAfter} after; node ${m.node}, onnxruntime-node ${m.onnxruntime}, sharp ${m.sharp}, hnswlib-node ${m.hnswlib}`,
    '',
    'encoder alone (1 worker; latency = one batch)',
    table(
      ['model', 'precision', 'provider', 'threads', 'batch', 'images/s', 'p50 / p99 ms'],
      [doc.encoder.fp32, doc.encoder.int8].flatMap((b) => b.runs.map((r) => [r.model, r.precision, r.provider, r.threads, r.batch === b.best.batch ? `${r.batch} (best)` : r.batch, r.imagesPerSecond, lat(r.latencyMs)])),
    ),
    `INT8 / FP32 at best batch: ${doc.encoder.int8Speedup}x`,
    (() => {
      const d = doc.encoder.daemonSettings;
      return `at the daemon's settings (${d.model}, ${d.workers} worker(s) x ${d.threads} threads, maxBatch ${d.batch}, maxWaitMs ${d.maxWaitMs}, ${d.inFlight} frames in flight, mean batch ${d.meanBatch}): ${d.imagesPerSecond} images/s, ${d.cpuMsPerImage} CPU ms per image, per frame p50 / p99 ${lat(d.latencyMs)} ms`;
    })(),
    '',
    (() => {
      const p = doc.preprocess;
      return `preprocess alone (-> ${p.input}; ${p.inFlight} in flight, libuv pool ${p.threadpool}, sharp concurrency ${p.sharpConcurrency}; the fast path decodes JPEGs of ${p.decodeThreadPixels / 1000}k pixels and more on ${p.decodeThreads} thread(s), smaller ones on the calling thread):`;
    })(),
    table(
      ['frames', 'decoder', 'images/s', 'CPU ms per image', 'p50 / p99 ms'],
      doc.preprocess.runs.map((r) => [r.frames, r.threads > 0 ? `${r.decoder}, ${r.threads} threads` : r.decoder, r.imagesPerSecond, r.cpuMsPerImage, lat(r.latencyMs)]),
    ),
    `fast / sharp: ${doc.preprocess.speedup.sampleFrames}x on the sample frames, ${doc.preprocess.speedup.cameraFrames}x on 640x480 camera JPEGs`,
    '',
    (() => {
      const s = doc.e2e.settings;
      return `end to end (${s.model} ${s.precision} on ${s.provider}, ${s.workers}x${s.threads} threads, maxBatch ${s.maxBatch}, queue ${s.queueSize}, ${s.references} references (${s.index}), ${s.broker}, database in ${s.stateDir}, ${s.durationS} s; every frame is an event except on the sample line)`;
    })(),
    table(
      ['replay', 'frames/s', 'events/s', 'CPU ms per frame', 'arrival -> PUBACK p50 / p99 ms', 'dropped', 'backlog at end'],
      [
        ['max rate', doc.e2e.saturated] as const,
        [`${doc.e2e.paced.fps} fps`, doc.e2e.paced] as const,
        ...(doc.e2e.volatileState ? [['max rate, database on tmpfs (not durable; comparison only)', doc.e2e.volatileState] as const] : []),
        ...(doc.e2e.sampleLine ? [["max rate on the sample line (its references, the bundle's threshold: only anomalies are events)", doc.e2e.sampleLine] as const] : []),
      ].map(([name, r]) => [name, r.framesPerSecond, r.eventsPerSecond, r.cpuMsPerFrame, lat(r.latencyMs), r.framesDropped, r.backlogAtEnd]),
    ),
    (() => {
      const c = doc.e2e.cameras;
      return `${c.cameras} GStreamer test cameras (videotestsrc ${c.frameSize}, ${c.fpsEach} fps each) through one pipeline: ${c.framesPerSecond} frames/s together (${c.perCamera.map((p) => `${p.camera} ${p.framesPerSecond}`).join(', ')}; spread ${c.shareSpreadPct}%), RSS (${c.memory.allocator}) steady ${c.memory.steadyMb} MB, max deviation ${c.memory.maxDeviationPct}% (${c.memory.largestDeviation.mb} MB at ${c.memory.largestDeviation.atS} s) over ${c.memory.durationS} s`;
    })(),
    '',
    `kNN (${doc.knn.dimension}-d, ${doc.knn.queries} queries, k 10, M ${doc.knn.options.M}, efConstruction ${doc.knn.options.efConstruction}, ef ${doc.knn.options.ef}; ${doc.knn.data})`,
    table(
      ['references', 'exact p50 / mean / p99 ms', 'HNSW p50 / mean / p99 ms', 'recall@10', 'HNSW add s'],
      doc.knn.sizes.map((s) => [s.references, `${s.exactMs.p50} / ${s.exactMs.mean} / ${s.exactMs.p99}`, `${s.hnswMs.p50} / ${s.hnswMs.mean} / ${s.hnswMs.p99}`, s.recallAt10, s.hnswAddS]),
    ),
    `crossover: ${doc.knn.crossover.references} references (${doc.knn.crossover.note}); default exactBelow ${doc.knn.options.exactBelow}`,
    `ready to classify in a fresh process with ${doc.knn.ready.references} references: ${doc.knn.ready.wallMs} ms, ${doc.knn.ready.cpuMs} ms of CPU (index ${doc.knn.ready.mode} from ${doc.knn.ready.loadedFrom}, open ${doc.knn.ready.openMs} ms, ${doc.knn.ready.allocator}, hnswlib loader ${doc.knn.ready.loader})`,
    '',
    `memory (daemon process under ${doc.memory.allocator}, ${doc.memory.durationS} s at full rate, ${doc.memory.samples} samples): steady RSS ${doc.memory.steadyMb} MB, max deviation ${doc.memory.maxDeviationPct}% (${doc.memory.largestDeviation.mb} MB at ${doc.memory.largestDeviation.atS} s), drift ${doc.memory.driftPct}%, slope ${doc.memory.slopeMbPerMin} MB/min`,
    '',
    (() => {
      const s = doc.swap;
      return `model changes at full rate (started on ${s.settings.started}, pushed ${s.settings.pushed}, ${s.settings.phaseS} s per phase; latency = frame read -> decision; a change's window runs from 0.5 s before its call to 1 s after its reply)`;
    })(),
    table(
      ['phase or change', 'frames/s', 'took ms', 'p99 ms', 'max ms', 'dropped'],
      [
        ['no change (phase A)', doc.swap.withoutSwap.framesPerSecond, '', doc.swap.withoutSwap.latencyMs.p99, doc.swap.withoutSwap.latencyMs.max, doc.swap.withoutSwap.framesDropped],
        ['activate + rollback (phase B)', doc.swap.withSwaps.framesPerSecond, '', doc.swap.withSwaps.latencyMs.p99, doc.swap.withSwaps.latencyMs.max, doc.swap.withSwaps.framesDropped],
        ...[doc.swap.push, ...doc.swap.swaps].map((c) => [`${c.action} -> ${c.key}`, '', c.durationMs, '', c.maxLatencyMs, c.framesDropped]),
      ],
    ),
    `swap pause: ${doc.swap.maxLatencyMsDuringSwap} ms during a swap vs ${doc.swap.maxLatencyMsWithoutSwap} ms without (${doc.swap.pauseRatio}x); push of ${doc.swap.push.references} references: ${doc.swap.maxLatencyMsDuringPush} ms; gate: ${doc.swap.push.gate}`,
    '',
    'targets',
    table(
      ['target', 'met', 'value', 'goal', 'detail'],
      doc.targets.map((t) => [t.name, t.met ? 'met' : 'NOT MET', t.value, t.goal, t.detail]),
    ),
  ];
  return lines.join('\n') + '\n';
}

function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(cells[0]!), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join('\n');
}
