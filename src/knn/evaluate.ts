import { decide, type DecisionNeighbour } from './classifier.js';
import { ExactVectors } from './exact.js';
import { binary, perLabel, type LabelMetrics, type Sample } from './metrics.js';
import { resolveClassifierSettings, type ClassifierSettings } from './options.js';
import type { ReferenceStore } from './store.js';

/** How well one model's vectors classify the references, each decided by all the others. */
export interface LeaveOneOut {
  modelKey: string;
  /** References decided; 0 when the evaluation was skipped (see note). */
  references: number;
  /** Binary figures, anomaly (any label but goodLabel) positive; NaN when skipped. */
  f1: number;
  auroc: number;
  precision: number;
  recall: number;
  byLabel?: LabelMetrics[];
  /** Why the evaluation was skipped. */
  note?: string;
}

export interface GateResult {
  pass: boolean;
  /** One sentence with both models' figures, for logs and the technician. */
  reason: string;
  active: LeaveOneOut;
  candidate: LeaveOneOut;
  tolerance: number;
}

/** One side of a model update: the vectors it produced and the classifier settings it runs with. */
export interface ModelUnderTest {
  modelKey: string;
  dimension: number;
  settings: ClassifierSettings;
}

/**
 * Decides every reference with a vector for `modelKey` (or just `ids`) by the classifier rule over
 * its k nearest other references among the same set. A private exact scan: it runs once per model
 * update over a few thousand references and leaves the live index alone.
 */
export function leaveOneOut(
  store: ReferenceStore,
  modelKey: string,
  dimension: number,
  settings: ClassifierSettings,
  options: { ids?: readonly number[] } = {},
): LeaveOneOut {
  const found = leaveOneOutSamples(store, modelKey, dimension, settings, options);
  if ('note' in found) return skipped(modelKey, found.note);
  const { f1, auroc, precision, recall } = binary(found.samples, resolveClassifierSettings(settings, {}).goodLabel);
  return { modelKey, references: found.samples.length, f1, auroc, precision, recall, byLabel: perLabel(found.samples) };
}

/** The per-reference decisions behind leaveOneOut (the web UI draws its precision-recall curve from them), or why there are none. */
export function leaveOneOutSamples(
  store: ReferenceStore,
  modelKey: string,
  dimension: number,
  settings: ClassifierSettings,
  options: { ids?: readonly number[] } = {},
): { samples: Sample[] } | { note: string } {
  const rule = resolveClassifierSettings(settings, {});
  const packed = store.loadVectors(modelKey, dimension, options.ids);
  const labels = store.labelsOf(packed.ids);
  const pool = new ExactVectors(dimension, packed);
  // A reference removed between the two reads must neither be decided nor vote.
  for (const id of packed.ids) if (!labels.has(id)) pool.remove(id);

  const n = pool.size;
  if (n < 2) return { note: `only ${n} reference${n === 1 ? '' : 's'} to evaluate ${modelKey} on; leave-one-out needs at least 2` };
  const good = [...labels.values()].filter((label) => label === rule.goodLabel).length;
  if (good === 0 || good === n) {
    const which = good === 0 ? `defects (none is "${rule.goodLabel}")` : `"${rule.goodLabel}"`;
    return { note: `all ${n} references are ${which}; leave-one-out needs both good and defect references` };
  }

  const samples: Sample[] = [];
  for (const [id, vector] of pool.entries()) {
    // One more than k, because the reference itself is among the nearest.
    const neighbours: DecisionNeighbour[] = pool
      .search(vector, rule.k + 1)
      .filter((found) => found.referenceId !== id)
      .slice(0, rule.k)
      .map((found) => ({ ...found, label: labels.get(found.referenceId)! }));
    const decision = decide(neighbours, rule);
    samples.push({ trueLabel: labels.get(id)!, predictedLabel: decision.label, score: decision.score, anomaly: decision.anomaly });
  }
  return { samples };
}

/**
 * The accuracy gate: refuses the candidate when its F1 or AUROC is more than `tolerance` below the
 * active model's. Both must come from the same references (see gateModelUpdate).
 */
export function compareModels(
  active: LeaveOneOut,
  candidate: LeaveOneOut,
  tolerance: number,
  /** What both were measured on, for the reason. */
  on = (n: number) => `leave-one-out over the same ${n} references`,
): GateResult {
  if (!(tolerance >= 0)) throw new RangeError(`the gate tolerance must be a number >= 0, got ${tolerance}`);
  const result = (pass: boolean, reason: string): GateResult => ({ pass, reason, active, candidate, tolerance });
  if (Number.isNaN(active.f1) || Number.isNaN(active.auroc)) {
    // Too few references to judge either model: refusing would block every update of a fresh line.
    return result(true, `the gate could not compare the models (${active.note ?? 'the active model has no figures'}), so the new model passes unchecked`);
  }
  const figures = `F1 ${fixed(candidate.f1)} and AUROC ${fixed(candidate.auroc)} against ${fixed(active.f1)} and ${fixed(active.auroc)} of the active model`;
  if (Number.isNaN(candidate.f1) || Number.isNaN(candidate.auroc)) {
    return result(false, `the new model could not be evaluated (${candidate.note ?? 'it has no figures'}): ${figures}`);
  }
  if (candidate.references !== active.references) {
    throw new Error(`the gate compares models on the same references, got ${candidate.references} against ${active.references}`);
  }
  const over = `${on(active.references)} (tolerance ${tolerance})`;
  const worse = [candidate.f1 < active.f1 - tolerance ? 'F1' : '', candidate.auroc < active.auroc - tolerance ? 'AUROC' : ''].filter(Boolean);
  if (worse.length > 0) return result(false, `the new model's ${worse.join(' and ')} fell more than the tolerance below the active model's: ${figures}, ${over}`);
  return result(true, `the new model is within the tolerance of the active model: ${figures}, ${over}`);
}

/** Evaluates both models on the references that have vectors for both, and compares them. */
export function gateModelUpdate(store: ReferenceStore, active: ModelUnderTest, candidate: ModelUnderTest, tolerance: number): GateResult {
  const candidateIds = new Set(store.vectorIds(candidate.modelKey));
  const ids = store.vectorIds(active.modelKey).filter((id) => candidateIds.has(id));
  const evaluate = (model: ModelUnderTest): LeaveOneOut => leaveOneOut(store, model.modelKey, model.dimension, model.settings, { ids });
  return compareModels(evaluate(active), evaluate(candidate), tolerance);
}

function skipped(modelKey: string, note: string): LeaveOneOut {
  return { modelKey, references: 0, f1: Number.NaN, auroc: Number.NaN, precision: Number.NaN, recall: Number.NaN, note };
}

const fixed = (value: number): string => (Number.isNaN(value) ? 'n/a' : value.toFixed(3));
