/**
 * The seeded draws of a fuzz run: every random choice comes from here, so a seed repeats a run
 * exactly. The seed comes from FUZZ_SEED when set (to repeat a failure), else from the clock.
 */
import { mulberry32 } from '../../dist/bench/knn.js';

export function fuzzSeed(): number {
  return Number(process.env['FUZZ_SEED'] ?? Date.now() % 2 ** 32);
}

export class Draw {
  readonly next: () => number;
  constructor(readonly seed: number) {
    this.next = mulberry32(seed);
  }
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)] as T;
  }
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }
  /** Characters from `alphabet`, as a string of `min`..`max` of them. */
  text(alphabet: string, min: number, max: number): string {
    const chars = [...alphabet];
    return Array.from({ length: this.int(min, max) }, () => this.pick(chars)).join('');
  }
  uuid(): string {
    const hex = this.bytes(16).toString('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
  /** `data` with 1..`max` bytes replaced by random ones. */
  flip(data: Buffer, max = 8): Buffer {
    const out = Buffer.from(data);
    if (out.length === 0) return out;
    for (let n = this.int(1, max); n > 0; n--) out[this.int(0, out.length - 1)] = this.int(0, 255);
    return out;
  }
  /** `data` cut short at a random length below its own. */
  truncate(data: Buffer): Buffer {
    return data.subarray(0, this.int(0, Math.max(0, data.length - 1)));
  }
}
