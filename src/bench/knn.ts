import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../common/index.js';
import { loadBundle } from '../inference/index.js';
import { defaultVectorIndexOptions, ReferenceStore, VectorIndex, type NewReference } from '../knn/index.js';
import { openDatabase } from '../storage/index.js';
import { hnswlibLoader, unitEnvironment } from './as-shipped.js';
import type { BenchSettings } from './settings.js';
import { distribution, round, roundDistribution, type Distribution } from './stats.js';

export interface KnnSize {
  references: number;
  /** One exact-scan query for the 10 nearest. */
  exactMs: Distribution;
  /** One HNSW query for the 10 nearest, at the default ef. */
  hnswMs: Distribution;
  /** Share of the exact 10 nearest that HNSW returns, averaged over the queries. */
  recallAt10: number;
  /** Adding this size's new points to the graph, including the automatic save into SQLite. */
  hnswAddS: number;
}

export interface KnnSection {
  data: string;
  dimension: number;
  queries: number;
  options: { M: number; efConstruction: number; ef: number; exactBelow: number };
  sizes: KnnSize[];
  /** References at which HNSW becomes faster than the exact scan (interpolated between measured sizes). */
  crossover: { references: number; note: string };
  ready: {
    references: number;
    wallMs: number;
    processReadyMs: number;
    /** CPU time of the child up to ready (user + system): steadier than wall ms on a shared machine. */
    cpuMs: number;
    openMs: number;
    mode: string;
    loadedFrom: string;
    /** The child's malloc, as the systemd unit sets it. */
    allocator: string;
    /** hnswlib-node's index loader: as npm's postinstall rebuilt it (deploy/hnswlib-loader.mjs), or as published. */
    loader: string;
  };
}

/**
 * Exact scan against HNSW on the real VectorIndex (both over the same SQLite store), at growing
 * sizes of synthetic clustered vectors; then a fresh process opens the largest one.
 */
export async function benchKnn(settings: BenchSettings): Promise<KnnSection> {
  // The vectors have the dimension of the model the daemon runs.
  const dimension = (await loadBundle(settings.int8Dir)).manifest.output.dimension;
  const modelKey = 'bench@synthetic';
  const gen = new ClusteredVectors(dimension, 7);
  const dir = mkdtempSync(join(tmpdir(), 'linewatch-bench-knn-'));
  const dbPath = join(dir, 'linewatch.db');
  const db = openDatabase(dbPath);
  try {
    const store = new ReferenceStore(db);
    const quiet = createLogger('bench.knn');
    // One store, two views of it: an exact index that never switches, and an HNSW index from the first point.
    const exact = VectorIndex.open(store, { modelKey, dimension, exactBelow: Number.MAX_SAFE_INTEGER, logger: quiet });
    const hnsw = VectorIndex.open(store, { modelKey, dimension, exactBelow: 0, logger: quiet });
    const queries = Array.from({ length: settings.knn.queries }, () => gen.next().vector);
    const sizes: KnnSize[] = [];
    for (const target of settings.knn.sizes) {
      let hnswAddMs = 0;
      while (exact.size < target) {
        const items = Array.from({ length: Math.min(10_000, target - exact.size) }, () => gen.next());
        const ids = store.addMany(
          modelKey,
          items.map(({ vector, label }) => ({ reference: { label, source: 'human', origin: 'bench' } satisfies NewReference, vector })),
        );
        const vectors = ids.map((referenceId, i) => ({ referenceId, vector: items[i]!.vector }));
        exact.addMany(vectors);
        const t = performance.now();
        hnsw.addMany(vectors);
        hnswAddMs += performance.now() - t;
      }
      sizes.push({ references: target, ...timeQueries(exact, hnsw, queries), hnswAddS: round(hnswAddMs / 1000) });
    }
    const largest = settings.knn.sizes[settings.knn.sizes.length - 1]!;
    hnsw.save();
    const ready = await readyInFreshProcess(dbPath, modelKey, dimension);
    return {
      data: gen.description,
      dimension,
      queries: queries.length,
      options: { ...defaultVectorIndexOptions },
      sizes,
      crossover: crossover(sizes),
      ready: { references: largest, ...ready },
    };
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function timeQueries(exact: VectorIndex, hnsw: VectorIndex, queries: Float32Array[]) {
  // Each index is timed in its own loop, warmed on the first queries: interleaving them would make
  // every HNSW query follow a scan of all vectors, which evicts the graph from the caches.
  const time = (index: VectorIndex) => {
    for (const q of queries.slice(0, 50)) index.search(q, 10);
    const ms: number[] = [];
    const found = queries.map((q) => {
      const t = performance.now();
      const result = index.search(q, 10);
      ms.push(performance.now() - t);
      return result;
    });
    return { ms, found };
  };
  const truth = time(exact);
  const approx = time(hnsw);
  let recall = 0;
  truth.found.forEach((want, i) => {
    const ids = new Set(want.map((n) => n.referenceId));
    recall += approx.found[i]!.filter((n) => ids.has(n.referenceId)).length / want.length;
  });
  return {
    exactMs: roundDistribution(distribution(truth.ms)),
    hnswMs: roundDistribution(distribution(approx.ms)),
    recallAt10: round(recall / queries.length, 4),
  };
}

/**
 * Where HNSW's median query time drops below the exact scan's, interpolated on a log scale of size.
 * Medians, because on a shared machine the means carry other processes' preemptions.
 */
function crossover(sizes: readonly KnnSize[]): { references: number; note: string } {
  const gap = (s: KnnSize) => s.exactMs.p50 - s.hnswMs.p50;
  const first = sizes.findIndex((s) => gap(s) > 0);
  if (first === -1) return { references: sizes[sizes.length - 1]!.references, note: 'exact was faster at every measured size' };
  if (first === 0) return { references: sizes[0]!.references, note: 'HNSW was already faster at the smallest measured size' };
  const a = sizes[first - 1]!;
  const b = sizes[first]!;
  const f = -gap(a) / (gap(b) - gap(a));
  const references = Math.exp(Math.log(a.references) + f * (Math.log(b.references) - Math.log(a.references)));
  return { references: Math.round(references), note: `between ${a.references} and ${b.references}` };
}

async function readyInFreshProcess(dbPath: string, modelKey: string, dimension: number) {
  const script = fileURLToPath(new URL('./knn-ready-child.js', import.meta.url));
  const started = performance.now();
  // Under the unit's allocator and its options: the graph's memory is most of the start.
  const env = { ...process.env, ...unitEnvironment() };
  const child = spawn(process.execPath, [script, dbPath, modelKey, String(dimension)], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let wallMs = Number.NaN;
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    // The moment the answer line arrives, not the later exit, is "ready".
    if (Number.isNaN(wallMs) && out.includes('\n')) wallMs = performance.now() - started;
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', resolve);
  });
  if (code !== 0 || Number.isNaN(wallMs)) throw new Error(`the kNN ready-to-classify child failed (exit code ${code}): ${out}`);
  const result = JSON.parse(out) as { readyMs: number; cpuMs: number; allocator: string; openMs: number; mode: string; loadedFrom: string };
  return {
    wallMs: Math.round(wallMs),
    processReadyMs: Math.round(result.readyMs),
    cpuMs: Math.round(result.cpuMs),
    openMs: Math.round(result.openMs),
    mode: result.mode,
    loadedFrom: result.loadedFrom,
    allocator: result.allocator,
    loader: await hnswlibLoader(),
  };
}

/**
 * Synthetic embeddings shaped like a trained encoder's: 100 clusters (part types and their
 * variants); inside a cluster points vary along 32 directions of their own (pose, lighting, size)
 * plus small isotropic noise, then are L2-normalised. 32 directions give the local intrinsic
 * dimension (Levina-Bickel MLE, k 20, over 4,000 points) that the default model's embeddings of
 * the fashion-mnist images have: 5.5 against 5.6. Uniform random vectors (intrinsic dimension
 * 128) would be far harder for HNSW than real embeddings and say little about them.
 */
class ClusteredVectors {
  readonly description: string;
  private readonly centres: Float32Array[];
  private readonly bases: Float32Array[][];
  private readonly random: () => number;

  constructor(
    private readonly dimension: number,
    seed: number,
    private readonly clusters = 100,
    private readonly latent = 32,
  ) {
    this.random = mulberry32(seed);
    this.centres = Array.from({ length: clusters }, () => normalise(this.gaussianVector(1)));
    this.bases = Array.from({ length: clusters }, () => Array.from({ length: latent }, () => this.gaussianVector(1 / Math.sqrt(dimension))));
    this.description = `${clusters} clusters; point = centre + ${latent}-d cluster-specific variation (sd 0.15) + isotropic noise (norm ~0.1), L2-normalised, local intrinsic dimension matched to the default model's embeddings; seed ${seed}`;
  }

  next(): { vector: Float32Array; label: string } {
    const c = Math.floor(this.random() * this.clusters);
    const v = Float32Array.from(this.centres[c]!);
    for (const direction of this.bases[c]!) {
      const z = 0.15 * this.gaussian();
      for (let i = 0; i < v.length; i++) v[i]! += z * direction[i]!;
    }
    const noise = 0.1 / Math.sqrt(this.dimension);
    for (let i = 0; i < v.length; i++) v[i]! += noise * this.gaussian();
    // One cluster in five is a defect type.
    return { vector: normalise(v), label: c % 5 === 0 ? `defect-${c}` : 'good' };
  }

  private gaussianVector(sd: number): Float32Array {
    return Float32Array.from({ length: this.dimension }, () => sd * this.gaussian());
  }

  private gaussian(): number {
    return gaussian(this.random);
  }
}

/** A standard normal draw (Box-Muller) from a uniform source in [0, 1). */
export function gaussian(random: () => number): number {
  const u = 1 - random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

function normalise(v: Float32Array): Float32Array {
  let norm = 0;
  for (let i = 0; i < v.length; i++) norm += v[i]! * v[i]!;
  const scale = 1 / Math.sqrt(norm);
  for (let i = 0; i < v.length; i++) v[i]! *= scale;
  return v;
}

/** Deterministic uniform numbers in [0, 1), so a run can be repeated exactly. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
