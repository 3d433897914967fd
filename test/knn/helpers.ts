import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../dist/common/index.js';
import { mulberry32 } from '../../dist/bench/knn.js';

/** A fresh folder for SQLite files; remove() deletes it. */
export function tempFolder(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'linewatch-knn-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface LogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  fields: Record<string, unknown> | undefined;
}

/** Keeps test output clean while still recording what the index logged: each message in `lines`, with its level and fields in `entries`. */
export function quietLogger(lines: string[] = [], entries: LogEntry[] = []): Logger {
  const record = (level: LogEntry['level']) => (msg: string, fields?: Record<string, unknown>) => {
    lines.push(msg);
    entries.push({ level, msg, fields });
  };
  const logger: Logger = { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error'), child: () => logger };
  return logger;
}

/** Deterministic uniform numbers in [-0.5, 0.5) (the bench's mulberry32), so failures reproduce. */
export function random(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() - 0.5;
}

export function unit(values: ArrayLike<number>): Float32Array {
  let norm = 0;
  for (let i = 0; i < values.length; i++) norm += values[i]! * values[i]!;
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i]! / Math.sqrt(norm);
  return out;
}

/** `count` unit vectors scattered around `clusters` random centres, like embeddings of a few part types. */
export function clusteredVectors(count: number, dimension: number, clusters: number, spread: number, seed: number): Float32Array[] {
  const next = random(seed);
  const centres = Array.from({ length: clusters }, () => Array.from({ length: dimension }, next));
  return Array.from({ length: count }, (_, i) => unit(centres[i % clusters]!.map((c) => c + spread * next())));
}

/** The k nearest ids by a plain full sort: the reference the index is checked against. */
export function naiveNearest(vectors: ReadonlyMap<number, Float32Array>, query: Float32Array, k: number): { referenceId: number; distance: number }[] {
  const all = [...vectors].map(([referenceId, v]) => {
    let dot = 0;
    for (let i = 0; i < v.length; i++) dot += v[i]! * query[i]!;
    return { referenceId, distance: Math.min(2, Math.max(0, 1 - dot)) };
  });
  all.sort((a, b) => a.distance - b.distance);
  return all.slice(0, k);
}
