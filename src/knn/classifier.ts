import { UserError } from '../common/index.js';
import { defaultClassifierSettings, resolveClassifierSettings, UNKNOWN_LABEL, type ClassifierSettings } from './options.js';
import type { Neighbour } from './exact.js';
import type { ReferenceStore } from './store.js';
import type { VectorIndex } from './vector-index.js';

/** One of the k nearest references behind a decision: a search hit with its reference's label. */
export interface DecisionNeighbour extends Neighbour {
  label: string;
}

export interface Decision {
  anomaly: boolean;
  /** Anomaly score in [0, 1]; AUROC is computed from it. */
  score: number;
  /** The threshold the decision was made with. */
  threshold: number;
  /** goodLabel for a good decision; the most likely defect label, or `unknown`, for an anomaly. */
  label: string;
  /** True when the nearest reference is farther than unknownDistance. */
  unknown: boolean;
  /** The k nearest references, nearest first. */
  neighbours: DecisionNeighbour[];
}

/** Thrown by classify() while no reference has a vector for the model. */
export class NoReferencesError extends UserError {
  constructor(modelKey: string, enrolled: number) {
    if (enrolled === 0) {
      super(`no references enrolled yet for ${modelKey}`, 'run linewatch enroll <folder> with images of good parts (and of known defects)');
    } else {
      // After a model update the old vectors no longer count until the references are re-embedded.
      super(
        `${enrolled} references are enrolled but none has a vector for ${modelKey} yet`,
        're-embed the enrolled references with this model, or run linewatch enroll <folder>',
      );
    }
  }
}

// Keeps a zero distance (a query identical to a reference) from dividing by zero.
const distanceEpsilon = 1e-6;

/**
 * The kNN classifier defined in docs/architecture.md ("Classifier"), shared with training/eval.py:
 * the nearest good against the nearest defect among the k nearest references, plus an unknown-distance check.
 */
export class Classifier {
  private current: ClassifierSettings;

  constructor(
    private readonly index: VectorIndex,
    private readonly store: ReferenceStore,
    settings: Partial<ClassifierSettings> = {},
  ) {
    this.current = resolveClassifierSettings(defaultClassifierSettings, settings);
  }

  get settings(): Readonly<ClassifierSettings> {
    return this.current;
  }

  /** Changes settings for the next decisions; nothing is rebuilt. Throws UserError on an invalid value. */
  configure(settings: Partial<ClassifierSettings>): void {
    this.current = resolveClassifierSettings(this.current, settings);
  }

  /** False until at least one reference has a vector for this model; classify() would throw NoReferencesError. */
  get ready(): boolean {
    return this.index.size > 0;
  }

  /** Why classify() would refuse, for the daemon's status; undefined when ready. */
  notReady(): NoReferencesError | undefined {
    return this.ready ? undefined : new NoReferencesError(this.index.modelKey, this.store.count());
  }

  /** Decides on one unit-length query vector. Throws NoReferencesError when not ready. */
  classify(vector: Float32Array): Decision {
    const refusal = this.notReady();
    if (refusal) throw refusal;
    const settings = this.current;
    const found = this.index.search(vector, settings.k);
    const labels = this.store.labelsOf(found.map((n) => n.referenceId));
    // A reference removed from the store but not yet from the index must not vote.
    const neighbours: DecisionNeighbour[] = [];
    for (const n of found) {
      const label = labels.get(n.referenceId);
      if (label !== undefined) neighbours.push({ referenceId: n.referenceId, label, distance: n.distance });
    }
    return decide(neighbours, settings);
  }
}

/**
 * The classifier rule on the k nearest references (nearest first); pure, so evaluation reuses it unchanged.
 * The score weighs the nearest good reference against the nearest defect one, so it orders items by
 * how anomalous they are even when k is 1 or every neighbour is good (a share of votes is only 0 or 1 at k = 1).
 */
export function decide(neighbours: DecisionNeighbour[], { threshold, unknownDistance, goodLabel }: ClassifierSettings): Decision {
  const nearest = neighbours[0];
  if (nearest === undefined || nearest.distance > unknownDistance) {
    // Far from every reference, so far from every good one: a new kind of anomaly whatever the vote says.
    return { anomaly: true, score: 1, threshold, label: UNKNOWN_LABEL, unknown: true, neighbours };
  }
  // A side with no reference among the k nearest stands at unknownDistance, and none counts as farther:
  // with only good references near, the score still grows with the distance to the nearest of them.
  let goodDistance = unknownDistance;
  let defectDistance = unknownDistance;
  const byLabel = new Map<string, number>();
  for (const n of neighbours) {
    if (n.label === goodLabel) {
      goodDistance = Math.min(goodDistance, n.distance);
    } else {
      defectDistance = Math.min(defectDistance, n.distance);
      byLabel.set(n.label, (byLabel.get(n.label) ?? 0) + 1 / (n.distance + distanceEpsilon));
    }
  }
  // The nearest defect's share of the weights 1/(d + epsilon) of the two: below 1 even at distance 0,
  // so unknown items stay on top.
  const goodSide = goodDistance + distanceEpsilon;
  const defectSide = defectDistance + distanceEpsilon;
  const score = goodSide / (goodSide + defectSide);
  const anomaly = score >= threshold;
  let label = anomaly ? UNKNOWN_LABEL : goodLabel;
  if (anomaly) {
    let best = 0;
    for (const [candidate, weight] of byLabel) {
      if (weight > best) {
        best = weight;
        label = candidate;
      }
    }
  }
  return { anomaly, score, threshold, label, unknown: false, neighbours };
}
