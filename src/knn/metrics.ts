/** Evaluation figures of the kNN classifier, for `linewatch eval` and the model-update gate; computed the same way as training/eval.py. */

export interface LabelMetrics {
  label: string;
  support: number;
  precision: number;
  recall: number;
  f1: number;
}

export interface BinaryMetrics {
  /** Anomaly is the positive class. */
  precision: number;
  recall: number;
  f1: number;
  auroc: number;
  truePositives: number;
  falsePositives: number;
  trueNegatives: number;
  falseNegatives: number;
}

export interface PrPoint {
  threshold: number;
  precision: number;
  recall: number;
}

export interface Sample {
  trueLabel: string;
  predictedLabel: string;
  /** Anomaly score in [0, 1]. */
  score: number;
  anomaly: boolean;
}

const ratio = (num: number, den: number): number => (den === 0 ? 0 : num / den);
const harmonic = (p: number, r: number): number => (p + r === 0 ? 0 : (2 * p * r) / (p + r));

export function confusionMatrix(samples: readonly Sample[]): { labels: string[]; counts: number[][] } {
  const labels = [...new Set(samples.flatMap((s) => [s.trueLabel, s.predictedLabel]))].sort();
  const index = new Map(labels.map((l, i) => [l, i]));
  const counts = labels.map(() => labels.map(() => 0));
  for (const s of samples) counts[index.get(s.trueLabel)!]![index.get(s.predictedLabel)!]!++;
  return { labels, counts };
}

export function perLabel(samples: readonly Sample[]): LabelMetrics[] {
  const { labels, counts } = confusionMatrix(samples);
  return labels
    .map((label, i) => {
      const tp = counts[i]![i]!;
      const support = counts[i]!.reduce((a, b) => a + b, 0);
      const predicted = counts.reduce((sum, row) => sum + row[i]!, 0);
      const precision = ratio(tp, predicted);
      const recall = ratio(tp, support);
      return { label, support, precision, recall, f1: harmonic(precision, recall) };
    })
    .filter((m) => m.support > 0);
}

export function binary(samples: readonly Sample[], goodLabel: string): BinaryMetrics {
  let tp = 0, fp = 0, tn = 0, fn = 0;
  for (const s of samples) {
    const positive = s.trueLabel !== goodLabel;
    if (s.anomaly) positive ? tp++ : fp++;
    else positive ? fn++ : tn++;
  }
  const precision = ratio(tp, tp + fp);
  const recall = ratio(tp, tp + fn);
  return {
    precision,
    recall,
    f1: harmonic(precision, recall),
    auroc: auroc(samples.map((s) => s.score), samples.map((s) => s.trueLabel !== goodLabel)),
    truePositives: tp,
    falsePositives: fp,
    trueNegatives: tn,
    falseNegatives: fn,
  };
}

/** Area under the ROC curve by the rank statistic, ties counted as half. */
export function auroc(scores: readonly number[], positive: readonly boolean[]): number {
  const order = scores.map((score, i) => ({ score, positive: positive[i]! })).sort((a, b) => a.score - b.score);
  const nPos = order.filter((o) => o.positive).length;
  const nNeg = order.length - nPos;
  if (nPos === 0 || nNeg === 0) return Number.NaN;
  let rankSum = 0;
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j < order.length && order[j]!.score === order[i]!.score) j++;
    const midRank = (i + 1 + j) / 2;
    for (let t = i; t < j; t++) if (order[t]!.positive) rankSum += midRank;
    i = j;
  }
  return (rankSum - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

/** Precision and recall at every distinct score used as the threshold (anomaly when score >= t). */
export function precisionRecallCurve(samples: readonly Sample[], goodLabel: string): PrPoint[] {
  const sorted = [...samples].sort((a, b) => b.score - a.score);
  const totalPositive = sorted.filter((s) => s.trueLabel !== goodLabel).length;
  const points: PrPoint[] = [];
  let tp = 0, fp = 0;
  for (let i = 0; i < sorted.length; i++) {
    if (sorted[i]!.trueLabel !== goodLabel) tp++;
    else fp++;
    const next = sorted[i + 1];
    if (next && next.score === sorted[i]!.score) continue;
    points.push({ threshold: sorted[i]!.score, precision: ratio(tp, tp + fp), recall: ratio(tp, totalPositive) });
  }
  return points;
}
