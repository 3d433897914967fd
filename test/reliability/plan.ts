/**
 * How much the suite does: the quick form (CI, a couple of minutes on 2 cores) or, with SOAK=1,
 * the long form for SOAK_MINUTES. Failures owned by other changes are listed here, with why.
 */
import type { KnownIssue } from './tally.js';

const soak = process.env['SOAK'] === '1';
const minutes = Number(process.env['SOAK_MINUTES'] ?? 60);

export const plan = {
  soak,
  minutes,
  /** Inputs per in-process family (the soak runs them until its share of the time is spent). */
  configs: soak ? Infinity : 600,
  frames: soak ? Infinity : 400,
  inProcessMs: soak ? minutes * 60_000 * 0.1 : Infinity,
  /** kill -9 rounds: a count (quick) or a share of the time (soak). */
  killRounds: soak ? Infinity : 3,
  killMs: soak ? minutes * 60_000 * 0.15 : Infinity,
  /** The long-lived daemon: how long (the soak), how often the broker goes away and for how many events. */
  runMs: soak ? minutes * 60_000 * 0.65 : 0,
  bounceEveryMs: 3 * 60_000,
  outageEvents: soak ? 5_000 : 300,
  /** Inputs to the running daemon per round (the soak repeats rounds until runMs is spent). */
  http: soak ? 60 : 150,
  mqtt: soak ? 60 : 150,
  bundles: soak ? 6 : 40,
};

/** Empty since issue 14's fixes merged: every failure fails the run. Add one only with its owner and why. */
export const knownIssues: KnownIssue[] = [];
