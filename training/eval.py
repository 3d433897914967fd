"""The kNN classifier exactly as docs/architecture.md defines it for the daemon, the
anomaly-vs-good metrics, and the calibration of k / threshold / unknownDistance."""
import sys

import numpy as np

WEIGHT_EPS = 1e-6
K_CHOICES = (1, 3, 5, 7, 9)
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.01, 0.9951, 0.01))
# Settings whose out-of-fold scores take fewer values leave the threshold nothing to tune.
MIN_DISTINCT_SCORES = 20
# The precision (and recall) a technician asks for: the report's operating points.
OPERATING_LEVEL = 0.9
RECALL_GRID = np.round(np.linspace(0, 1, 101), 2)  # recalls at which the report gives the PR curve


def l2_normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def neighbours(queries: np.ndarray, refs: np.ndarray, k: int):
    """Cosine distances (1 - dot of L2-normalised float32 vectors, clipped to [0, 2]) to the k
    nearest references, nearest first, with their indices."""
    d = np.clip(1.0 - l2_normalise(queries) @ l2_normalise(refs).T, 0.0, 2.0)
    idx = np.argsort(d, axis=1, kind='stable')[:, :k]
    return np.take_along_axis(d, idx, axis=1), idx


def knn_scores(dist: np.ndarray, labels: np.ndarray, unknown_distance: float, good_label: str) -> np.ndarray:
    """Anomaly score of each query from its k nearest distances and their labels (nearest first):
    the nearest defect's share of the weights w = 1/(d + 1e-6) of the nearest good and the nearest
    defect reference, each side's distance at most unknownDistance (a side absent from the k nearest
    stands there); 1 when the nearest is beyond unknownDistance."""
    dist = dist.astype(np.float64)
    good = labels == good_label
    good_side = np.minimum(np.where(good, dist, np.inf).min(1), unknown_distance) + WEIGHT_EPS
    defect_side = np.minimum(np.where(good, np.inf, dist).min(1), unknown_distance) + WEIGHT_EPS
    score = good_side / (good_side + defect_side)
    score[dist[:, 0] > unknown_distance] = 1.0
    return score


def classify(queries, refs, ref_labels, settings: dict) -> np.ndarray:
    dist, idx = neighbours(queries, refs, settings['k'])
    return knn_scores(dist, np.asarray(ref_labels)[idx], settings['unknownDistance'], settings['goodLabel'])


def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUROC with average ranks for ties (anomaly = positive class)."""
    y_true = np.asarray(y_true, bool)
    order = np.argsort(score, kind='stable')
    ranks = np.empty(len(score))
    sorted_scores = np.asarray(score)[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = y_true.sum(), (~y_true).sum()
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def decisions(y_true, y_pred) -> dict:
    """Precision, recall and F1 of the decisions (anomaly = positive), with their counts."""
    y_true, y_pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    tp = int((y_true & y_pred).sum())
    fp = int((~y_true & y_pred).sum())
    fn = int((y_true & ~y_pred).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {'precision': precision, 'recall': recall, 'f1': f1, 'tp': tp, 'fp': fp, 'fn': fn, 'n': len(y_true)}


def metrics(y_true, y_pred, score) -> dict:
    out = decisions(y_true, y_pred)
    return {'precision': out['precision'], 'recall': out['recall'], 'f1': out['f1'], 'auroc': auroc(y_true, score),
            **{k: out[k] for k in ('tp', 'fp', 'fn', 'n')}}


def pr_points(y_true, score):
    """The precision-recall curve as the daemon draws it (precisionRecallCurve, src/knn/metrics.ts):
    each distinct score used as the threshold (anomaly when score >= t), highest first, with the
    precision and recall of that decision. Recall never falls along the points."""
    y, s = np.asarray(y_true, bool), np.asarray(score, np.float64)
    order = np.argsort(-s, kind='stable')
    s, y = s[order], y[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last item of each run of equal scores
    tp = np.cumsum(y)[last]
    precision = tp / (np.flatnonzero(last) + 1)
    recall = tp / y.sum() if y.any() else np.zeros(len(tp))
    return s[last], precision, recall


def _typed_threshold(thresholds: np.ndarray, i: int) -> float:
    """A short decimal that makes the same decisions as thresholds[i] (so a technician can type it
    into knn.threshold): inside (next lower distinct score, thresholds[i]], in the middle half of that
    gap. Not merely inside it: the daemon computes scores from float32 vectors, and where distinct
    scores lie 1e-4 apart a threshold 6e-6 from one of them flipped an item (the smoke run)."""
    if i + 1 == len(thresholds):
        return min(0.0, float(thresholds[i]))  # the lowest point flags every item
    low, high = float(thresholds[i + 1]), float(thresholds[i])
    quarter = (high - low) / 4
    for digits in range(1, 12):
        t = round((low + high) / 2, digits)
        if low + quarter <= t <= high - quarter:
            return t
    return (low + high) / 2


def operating_points(y_true, score, level: float = OPERATING_LEVEL) -> dict:
    """The points a technician would pick on the precision-recall curve: the best precision among
    thresholds reaching recall >= level, and the best recall among those reaching precision >=
    level (None when no threshold does), each with its threshold."""
    thresholds, precision, recall = pr_points(y_true, score)

    def best(reached, value, tie):
        idx = np.flatnonzero(reached)
        if not len(idx):
            return None
        i = idx[np.lexsort((tie[idx], value[idx]))[-1]]
        return {'precision': float(precision[i]), 'recall': float(recall[i]),
                'threshold': _typed_threshold(thresholds, i)}

    return {'level': level, 'precisionAtRecall': best(recall >= level, precision, recall),
            'recallAtPrecision': best(precision >= level, recall, precision)}


def pr_curve(y_true, score) -> dict:
    """The interpolated precision-recall curve on RECALL_GRID: at each recall r, the best precision
    among thresholds reaching recall >= r (its value at `level` is operating_points' precision)."""
    _, precision, recall = pr_points(y_true, score)
    best_from = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or more
    at = np.searchsorted(recall, RECALL_GRID, side='left')
    return {'recall': RECALL_GRID.tolist(), 'precision': [round(float(best_from[i]), 4) for i in at]}


def ranking_figures(y_true, score) -> dict:
    """What the score offers beyond the calibrated threshold: operating points and the PR curve."""
    return {'operatingPoints': operating_points(y_true, score), 'prCurve': pr_curve(y_true, score)}


def evaluate_knn(queries, query_labels, refs, ref_labels, settings: dict) -> dict:
    """Anomaly-vs-good figures of the kNN classifier, plus recall per defect label."""
    query_labels = np.asarray(query_labels)
    score = classify(queries, refs, ref_labels, settings)
    is_bad = query_labels != settings['goodLabel']
    pred = score >= settings['threshold']
    out = metrics(is_bad, pred, score)
    out.update(ranking_figures(is_bad, score))
    # The precision-recall curve has one point per distinct score.
    out['distinctScores'] = len(np.unique(score))
    out['recallByLabel'] = {lab: float(pred[query_labels == lab].mean())
                            for lab in sorted(set(query_labels)) if lab != settings['goodLabel']}
    return out


def _f1(counts: dict, y: np.ndarray, anomaly_share: float = None) -> float:
    """F1 of decisions(), or with anomalies and good items weighed to anomaly_share of the items."""
    if anomaly_share is None:
        return counts['f1']
    anomaly, good = anomaly_share / y.sum(), (1 - anomaly_share) / max((~y).sum(), 1)
    tp, fp, fn = counts['tp'] * anomaly, counts['fp'] * good, counts['fn'] * anomaly
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def calibrate(oof: list, good_label: str, smoothing: int = 0, anomaly_share: float = None):
    """Choose classifier settings from out-of-fold queries on training labels only.
    oof: list of (query vectors, query labels, reference vectors, reference labels), one per fold.
    unknownDistance: the largest nearest-reference distance any good training query had, so no
    good training item would have been called unknown; k and threshold: best out-of-fold F1 among
    the k whose scores take at least MIN_DISTINCT_SCORES values, ties broken towards k = 5 and
    threshold = 0.5 (the documented defaults); when no k does (a tiny folder), the k with the most
    distinct scores, with a warning. smoothing > 0 judges each threshold by the mean out-of-fold F1
    of the thresholds within +-smoothing steps of 0.01 (a plateau rather than one lucky point).
    anomaly_share: the F1 as if anomalies were that share of the items (labels chosen for their
    anomalies, not drawn at the stream's rate, would otherwise pull the threshold down).
    Returns (settings, out-of-fold F1, number of distinct out-of-fold scores of those settings)."""
    max_k = min(max(K_CHOICES), min(len(r) for _, _, r, _ in oof))
    folds = []
    for q, ql, r, rl in oof:
        dist, idx = neighbours(q, r, max_k)
        folds.append((dist, np.asarray(rl)[idx], np.asarray(ql) != good_label))
    dist_all = np.concatenate([f[0] for f in folds])
    y = np.concatenate([f[2] for f in folds])
    unknown = round(float(dist_all[~y, 0].max()), 4)
    best = fallback = None
    for k in (k for k in K_CHOICES if k <= max_k):
        score = np.concatenate([knn_scores(d[:, :k], lab[:, :k], unknown, good_label) for d, lab, _ in folds])
        distinct = len(np.unique(score))
        # decisions only: metrics() would also compute the AUROC (a Python loop) at every threshold
        f1s = np.array([_f1(decisions(y, score >= t), y, anomaly_share) if y.any() else 0.0 for t in THRESHOLDS])
        if smoothing:
            f1s = np.convolve(np.pad(f1s, smoothing, mode='edge'), np.full(2 * smoothing + 1, 1 / (2 * smoothing + 1)),
                              'valid')
        for t, f1 in zip(THRESHOLDS, f1s):
            key = (round(f1, 6), -abs(k - 5), -abs(t - 0.5))
            if distinct >= MIN_DISTINCT_SCORES and (best is None or key > best[0]):
                best = (key, k, t, distinct)
            if fallback is None or (distinct, key) > (fallback[3], fallback[0]):
                fallback = (key, k, t, distinct)
    if best is None:
        # A tiny labeled folder (or a model whose vectors do not separate): the run still ends with
        # a bundle and a report, whose distinct-scores column shows why the threshold barely tunes.
        best = fallback
        print(f'warning: the out-of-fold scores take at most {best[3]} distinct values, fewer than {MIN_DISTINCT_SCORES}: '
              'the threshold will barely tune; label more images (each label in several)', file=sys.stderr)
    settings = {'k': best[1], 'threshold': best[2], 'unknownDistance': unknown, 'goodLabel': good_label}
    return settings, best[0][0], best[3]
