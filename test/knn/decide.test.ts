import { describe, expect, it } from 'vitest';
import { decide, NoReferencesError, type DecisionNeighbour } from '../../dist/knn/classifier.js';
import { defaultClassifierSettings } from '../../dist/knn/index.js';

// The classifier rule on hand-made neighbour lists, so the boundaries of docs/architecture.md
// ("Classifier") can be hit exactly, which float vectors through an index cannot do.
const settings = { ...defaultClassifierSettings, k: 5, threshold: 0.5, unknownDistance: 0.4 };
let nextId = 1;
const at = (label: string, distance: number): DecisionNeighbour => ({ referenceId: nextId++, label, distance });

describe('decide', () => {
  it('calls an anomaly when score >= threshold: a score equal to the threshold is an anomaly', () => {
    // One good and one defect at the same distance: the defect share is exactly 0.5.
    const decision = decide([at('good', 0.1), at('dent', 0.1)], settings);
    expect(decision.score).toBe(0.5);
    expect(decision).toMatchObject({ anomaly: true, label: 'dent', threshold: 0.5, unknown: false });
    expect(decide([at('good', 0.1), at('dent', 0.1)], { ...settings, threshold: 0.5000001 })).toMatchObject({ anomaly: false, label: 'good' });
  });

  it('is unknown only when the nearest is farther than unknownDistance: at exactly unknownDistance it votes', () => {
    expect(decide([at('good', 0.4), at('good', 0.45)], settings)).toMatchObject({ anomaly: false, unknown: false, score: 0, label: 'good' });
    expect(decide([at('good', 0.400001)], settings)).toMatchObject({ anomaly: true, unknown: true, score: 1, label: 'unknown' });
  });

  it('calls a query with no neighbour at all unknown', () => {
    expect(decide([], settings)).toEqual({ anomaly: true, score: 1, threshold: 0.5, label: 'unknown', unknown: true, neighbours: [] });
  });

  it('labels by the largest total weight, not by the nearest defect', () => {
    // The crack is nearest, but the two stains together weigh more (1/0.11 + 1/0.12 > 1/0.1).
    const decision = decide([at('crack', 0.1), at('stain', 0.11), at('stain', 0.12), at('good', 0.3)], settings);
    expect(decision).toMatchObject({ anomaly: true, label: 'stain' });
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
