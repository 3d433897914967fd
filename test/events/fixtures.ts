import type { AnomalyDecision } from '../../dist/events/index.js';

/** A plausible anomaly decision for frame `seq`. */
export function decision(seq: number): AnomalyDecision {
  return {
    capturedAt: 1_700_000_000_000 + seq,
    site: 'plant1',
    line: 'l2',
    camera: 'cam3',
    score: 0.8,
    threshold: 0.5,
    label: 'scratch',
    unknown: false,
    neighbours: [{ referenceId: 1, label: 'scratch', distance: 0.12 }],
    model: { name: 'fmnist-triplet', version: '1.0.0' },
    frame: { seq, origin: `frame-${seq}.png` },
  };
}
