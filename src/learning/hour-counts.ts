const minuteMs = 60_000;

/** Counts by kind over the last hour, in one-minute buckets: bounded memory whatever the frame rate. */
export class HourCounts {
  private readonly buckets = new Map<number, Map<string, number>>();

  add(kind: string, at: number, n = 1): void {
    if (n === 0) return;
    const minute = Math.floor(at / minuteMs);
    let bucket = this.buckets.get(minute);
    if (!bucket) {
      bucket = new Map();
      this.buckets.set(minute, bucket);
      for (const old of this.buckets.keys()) if (old <= minute - 60) this.buckets.delete(old);
    }
    bucket.set(kind, (bucket.get(kind) ?? 0) + n);
  }

  /** Sums per kind over the 60 minutes up to `now`. */
  lastHour(now: number): Record<string, number> {
    const minute = Math.floor(now / minuteMs);
    const sums: Record<string, number> = {};
    for (const [m, bucket] of this.buckets) {
      if (m <= minute - 60 || m > minute) continue;
      for (const [kind, n] of bucket) sums[kind] = (sums[kind] ?? 0) + n;
    }
    return sums;
  }
}
