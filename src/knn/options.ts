import { UserError } from '../common/index.js';

/** Label given to a query far from every reference (see docs/architecture.md, "Classifier"). */
export const UNKNOWN_LABEL = 'unknown';

/** The classifier's tunables; all can change at run time without touching the index. */
export interface ClassifierSettings {
  /** Neighbours searched for the nearest good and nearest defect reference; they vote for the defect label. */
  k: number;
  /** A decision is an anomaly when score >= threshold; score is in [0, 1]. */
  threshold: number;
  /** Nearest cosine distance above which a query is `unknown` (score 1); in [0, 2]. */
  unknownDistance: number;
  /** The label of defect-free references. */
  goodLabel: string;
}

export const defaultClassifierSettings: Readonly<ClassifierSettings> = Object.freeze({
  k: 5,
  threshold: 0.5,
  unknownDistance: 0.6,
  goodLabel: 'good',
});

/** How a VectorIndex searches: exact scan for small collections, HNSW for large ones. */
export interface VectorIndexOptions {
  /** Below this many vectors the index scans exactly; at or above it, it uses HNSW. */
  exactBelow: number;
  /** HNSW graph degree. */
  M: number;
  /** HNSW build-time candidate list size. */
  efConstruction: number;
  /** HNSW query-time candidate list size; raised to k when k is larger. */
  ef: number;
}

export const defaultVectorIndexOptions: Readonly<VectorIndexOptions> = Object.freeze({
  // Measured by `linewatch bench` (kNN section) for 128-d vectors: the exact scan costs about 0.1 ms
  // per 1,000 references, an HNSW query 0.03-0.05 ms at these sizes (mostly the call into hnswlib),
  // so HNSW wins from about 300. FIELD-NOTES' ~20k (ScaNN, Qdrant) is for native SIMD scans, not a
  // JavaScript loop.
  exactBelow: 300,
  M: 16,
  efConstruction: 200,
  // At 100k of the bench's vectors (k 10, 1,000 queries): ef 64 recall@10 0.9993, 48 0.9975, 40
  // 0.9942, 32 0.9868; 48 is about 13% faster than 64 and keeps recall well above 0.99.
  ef: 48,
});

export function resolveClassifierSettings(base: ClassifierSettings, patch: Partial<ClassifierSettings>): ClassifierSettings {
  const next = { ...base, ...dropUndefined(patch) };
  if (!Number.isInteger(next.k) || next.k < 1) throw settingError('k', next.k, 'a whole number >= 1');
  if (!(next.threshold >= 0 && next.threshold <= 1)) throw settingError('threshold', next.threshold, 'a number in [0, 1]');
  if (!(next.unknownDistance >= 0 && next.unknownDistance <= 2)) {
    throw settingError('unknownDistance', next.unknownDistance, 'a cosine distance in [0, 2] (2 turns the check off)');
  }
  if (typeof next.goodLabel !== 'string' || next.goodLabel === '') throw settingError('goodLabel', next.goodLabel, 'a non-empty label');
  return next;
}

export function resolveVectorIndexOptions(patch: Partial<VectorIndexOptions>): VectorIndexOptions {
  const next = { ...defaultVectorIndexOptions, ...dropUndefined(patch) };
  if (!Number.isInteger(next.exactBelow) || next.exactBelow < 0) throw settingError('exactBelow', next.exactBelow, 'a whole number >= 0');
  if (!Number.isInteger(next.M) || next.M < 2) throw settingError('M', next.M, 'a whole number >= 2');
  if (!Number.isInteger(next.efConstruction) || next.efConstruction < 1) {
    throw settingError('efConstruction', next.efConstruction, 'a whole number >= 1');
  }
  if (!Number.isInteger(next.ef) || next.ef < 1) throw settingError('ef', next.ef, 'a whole number >= 1');
  return next;
}

function settingError(name: string, value: unknown, expected: string): UserError {
  return new UserError(`invalid kNN setting ${name}: ${JSON.stringify(value)}`, `set ${name} to ${expected}`);
}

function dropUndefined<T extends object>(patch: Partial<T>): Partial<T> {
  return Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<T>;
}
