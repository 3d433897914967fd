import { describe, expect, it } from 'vitest';
import { decide, NoReferencesError, type DecisionNeighbour } from '../../dist/knn/classifier.js';
import { defaultClassifierSettings } from '../../dist/knn/index.js';

// The classifier rule on hand-made neighbour lists, so the boundaries of docs/architecture.md
// ("Classifier") can be hit exactly, which float vectors through an index cannot do.
const settings = { ...defaultClassifierSettings, k: 5, threshold: 0.5, unknownDistance: 0.4 };
let nextId = 1;
const at = (label: string, distance: number): DecisionNeighbour => ({ referenceId: nextId++, label, distance });
// The documented score from the nearest good and nearest defect distance.
const score = (good: number, defect: number): number => (good + 1e-6) / (good + 1e-6 + (defect + 1e-6));

describe('decide', () => {
  it('calls an anomaly when score >= threshold: a score equal to the threshold is an anomaly', () => {
    // The nearest good and the nearest defect at the same distance: the score is exactly 0.5.
    const decision = decide([at('good', 0.1), at('dent', 0.1)], settings);
    expect(decision.score).toBe(0.5);
    expect(decision).toMatchObject({ anomaly: true, label: 'dent', threshold: 0.5, unknown: false });
    expect(decide([at('good', 0.1), at('dent', 0.1)], { ...settings, threshold: 0.5000001 })).toMatchObject({ anomaly: false, label: 'good' });
  });

  it('weighs the nearest good reference against the nearest defect one, whatever else is among the k', () => {
    const decision = decide([at('good', 0.05), at('dent', 0.1), at('good', 0.2), at('dent', 0.3)], settings);
    expect(decision.score).toBe(score(0.05, 0.1));
    // The nearer defect wins over the nearer good one in the same way.
    expect(decide([at('dent', 0.05), at('good', 0.1), at('good', 0.11)], settings).score).toBe(score(0.1, 0.05));
    expect(score(0.1, 0.05)).toBeGreaterThan(0.5);
  });

  it('orders items among good references only by their distance, as if a defect stood at unknownDistance', () => {
    // k = 1 and no defect anywhere near: a share of votes would be 0 for all three.
    const near = decide([at('good', 0.05)], { ...settings, k: 1 });
    const far = decide([at('good', 0.3)], { ...settings, k: 1 });
    expect(near.score).toBe(score(0.05, 0.4));
    expect(far.score).toBe(score(0.3, 0.4));
    expect(far.score).toBeGreaterThan(near.score);
    // Far from good with no defect among the k: an anomaly of no known label, but not unknown.
    expect(decide([at('good', 0.3)], { ...settings, threshold: 0.4 })).toMatchObject({ anomaly: true, label: 'unknown', unknown: false });
    // The same holds the other way: only defects among the k puts the good side at unknownDistance.
    expect(decide([at('dent', 0.1), at('dent', 0.2)], settings).score).toBe(score(0.4, 0.1));
  });

  it('counts no side farther than unknownDistance', () => {
    // The good reference at 0.9 is beyond unknownDistance 0.4, so it counts as at 0.4.
    expect(decide([at('dent', 0.2), at('good', 0.9)], settings).score).toBe(score(0.4, 0.2));
  });

  it('is unknown only when the nearest is farther than unknownDistance: at exactly unknownDistance it is scored', () => {
    expect(decide([at('good', 0.4), at('good', 0.45)], settings)).toMatchObject({ anomaly: true, unknown: false, score: 0.5, label: 'unknown' });
    expect(decide([at('good', 0.400001)], settings)).toMatchObject({ anomaly: true, unknown: true, score: 1, label: 'unknown' });
  });

  it('keeps unknown items above every other score: a query on top of a defect scores below 1', () => {
    const onDefect = decide([at('dent', 0), at('good', 0.4)], settings);
    expect(onDefect.score).toBeLessThan(1);
    expect(onDefect.score).toBeGreaterThan(0.99999);
    expect(decide([at('good', 0.5)], settings).score).toBe(1);
  });

  it('calls a query with no neighbour at all unknown', () => {
    expect(decide([], settings)).toEqual({ anomaly: true, score: 1, threshold: 0.5, label: 'unknown', unknown: true, neighbours: [] });
  });

  it('labels by the largest total weight, not by the nearest defect', () => {
    // The crack is nearest, but the two stains together weigh more (1/0.11 + 1/0.12 > 1/0.1).
    const decision = decide([at('crack', 0.1), at('stain', 0.11), at('stain', 0.12), at('good', 0.3)], settings);
    expect(decision).toMatchObject({ anomaly: true, label: 'stain' });
    // The score comes from the nearest defect (the crack) all the same.
    expect(decision.score).toBe(score(0.3, 0.1));
  });

  it('breaks an exact tie between defect labels in favour of the nearer one', () => {
    expect(decide([at('good', 0.05), at('chip', 0.1), at('burr', 0.1)], { ...settings, threshold: 0.1 })).toMatchObject({ anomaly: true, label: 'chip' });
  });

  it('tells how to fix references that have no vector for a new model', () => {
    const refusal = new NoReferencesError('toy@2', 3);
    expect(refusal.message).toBe('3 references are enrolled but none has a vector for toy@2 yet');
    expect(refusal.hint).toBe('re-embed the enrolled references with this model, or run linewatch enroll <folder>');
  });
});
