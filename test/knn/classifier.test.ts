import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UserError } from '../../dist/common/index.js';
import { Classifier, NoReferencesError, ReferenceStore, VectorIndex } from '../../dist/knn/index.js';
import { openDatabase, type Db } from '../../dist/storage/index.js';
import { quietLogger, tempFolder } from './helpers.js';

const model = 'toy@1';

/** A unit vector in the plane at `degrees` from the x axis: its cosine distance to angle 0 is 1 - cos(angle). */
function at(degrees: number): Float32Array {
  const r = (degrees * Math.PI) / 180;
  return new Float32Array([Math.cos(r), Math.sin(r)]);
}

describe('Classifier', () => {
  let folder: ReturnType<typeof tempFolder>;
  let db: Db;
  let store: ReferenceStore;
  let index: VectorIndex;

  beforeEach(() => {
    folder = tempFolder();
    db = openDatabase(join(folder.dir, 'linewatch.db'));
    store = new ReferenceStore(db);
    index = VectorIndex.open(store, { modelKey: model, dimension: 2, logger: quietLogger() });
  });
  afterEach(() => {
    db.close();
    folder.remove();
  });

  function enroll(...references: [label: string, degrees: number][]): number[] {
    const ids = store.addMany(
      model,
      references.map(([label, degrees]) => ({ reference: { label, source: 'human' as const, origin: `${label}-${degrees}` }, vector: at(degrees) })),
    );
    index.addMany(ids.map((referenceId, i) => ({ referenceId, vector: at(references[i]![1]) })));
    return ids;
  }

  const distance = (degrees: number): number => 1 - Math.cos((degrees * Math.PI) / 180);
  /** The documented score from the nearest good and nearest defect distance. */
  const score = (good: number, defect: number): number => (good + 1e-6) / (good + 1e-6 + (defect + 1e-6));

  it('says clearly that nothing is enrolled instead of failing obscurely', () => {
    const classifier = new Classifier(index, store);
    expect(classifier.ready).toBe(false);
    expect(() => classifier.classify(at(0))).toThrow(NoReferencesError);
    try {
      classifier.classify(at(0));
    } catch (err) {
      expect(err).toBeInstanceOf(UserError);
      expect((err as UserError).message).toMatch(/no references enrolled yet/);
      expect((err as UserError).hint).toMatch(/linewatch enroll <folder>/);
    }
    // References enrolled under an older model do not count for this one.
    store.add({ label: 'good', source: 'human', origin: 'old.png' }, 'toy@0', at(0));
    expect(classifier.notReady()?.message).toMatch(/1 references are enrolled but none has a vector for toy@1/);
    enroll(['good', 0]);
    expect(classifier.ready).toBe(true);
    expect(classifier.notReady()).toBeUndefined();
    expect(classifier.classify(at(1))).toMatchObject({ anomaly: false, label: 'good' });
  });

  it('scores the nearest defect against the nearest good reference: one close defect outweighs far good ones', () => {
    const ids = enroll(['good', 20], ['good', -20], ['scratch', 3]);
    const classifier = new Classifier(index, store, { k: 3, unknownDistance: 0.5 });
    const decision = classifier.classify(at(0));
    expect(decision.score).toBe(score(decision.neighbours[1]!.distance, decision.neighbours[0]!.distance));
    // Float32 vectors: close to, not exactly, the analytic distances.
    expect(decision.score).toBeCloseTo(score(distance(20), distance(3)), 5);
    expect(decision).toMatchObject({ anomaly: true, label: 'scratch', unknown: false, threshold: 0.5 });
    expect(decision.neighbours.map((n) => [n.referenceId, n.label])).toEqual([
      [ids[2], 'scratch'],
      [ids[0], 'good'],
      [ids[1], 'good'],
    ]);
    expect(decision.neighbours[0]!.distance).toBeCloseTo(1 - Math.cos((3 * Math.PI) / 180), 6);
  });

  it('flips a decision when the threshold changes at run time, without rebuilding', () => {
    enroll(['good', 2], ['good', -3], ['dent', 4]);
    const classifier = new Classifier(index, store, { k: 3 });
    const first = classifier.classify(at(0));
    expect(first.score).toBeGreaterThan(0.1);
    expect(first.score).toBeLessThan(0.5);
    expect(first).toMatchObject({ anomaly: false, label: 'good' });
    classifier.configure({ threshold: first.score - 0.01 });
    const second = classifier.classify(at(0));
    expect(second).toMatchObject({ anomaly: true, label: 'dent', threshold: first.score - 0.01 });
    expect(second.score).toBe(first.score);
    classifier.configure({ k: 2 }); // the dent drops out of the k nearest: the defect side stands at unknownDistance
    const without = classifier.classify(at(0));
    expect(without).toMatchObject({ anomaly: false, label: 'good' });
    expect(without.score).toBeCloseTo(score(distance(2), 0.6), 5);
    expect(classifier.settings).toEqual({ k: 2, threshold: first.score - 0.01, unknownDistance: 0.6, goodLabel: 'good' });
    expect(() => classifier.configure({ threshold: 1.5 })).toThrow(UserError);
  });

  it('calls a query unknown when its nearest reference is farther than unknownDistance, whatever the vote', () => {
    enroll(['good', 0], ['good', 5]);
    const classifier = new Classifier(index, store, { k: 2, unknownDistance: 0.3 });
    // The nearest good reference is 55 degrees away: distance 0.43 > 0.3.
    expect(classifier.classify(at(60))).toMatchObject({ anomaly: true, score: 1, label: 'unknown', unknown: true });
    classifier.configure({ unknownDistance: 0.6 });
    const known = classifier.classify(at(60));
    expect(known).toMatchObject({ anomaly: false, label: 'good', unknown: false });
    expect(known.score).toBeCloseTo(score(distance(55), 0.6), 5);
  });

  it('labels an anomaly with the defect of largest total weight, not the most votes', () => {
    enroll(['good', 40], ['crack', 2], ['stain', 8], ['stain', -9]);
    const classifier = new Classifier(index, store, { k: 4, unknownDistance: 1 });
    const decision = classifier.classify(at(0));
    // crack: one vote at 2 degrees outweighs stain's two votes at 8 and 9 degrees.
    const weight = (degrees: number): number => 1 / (distance(degrees) + 1e-6);
    expect(weight(2)).toBeGreaterThan(weight(8) + weight(9));
    expect(decision).toMatchObject({ anomaly: true, label: 'crack' });
    expect(decision.score).toBeCloseTo(score(distance(40), distance(2)), 6);
  });

  it('uses a configured good label, and ignores references removed from the store but not yet from the index', () => {
    const ids = enroll(['ok', 1], ['ok', -1], ['chip', 0]);
    store.remove(ids[2]!);
    const classifier = new Classifier(index, store, { k: 3, goodLabel: 'ok' });
    // Only the two good ones are left near: the score is small, not a defect's share.
    const decision = classifier.classify(at(0));
    expect(decision).toMatchObject({ anomaly: false, label: 'ok' });
    expect(decision.score).toBeCloseTo(score(distance(1), 0.6), 5);
    expect(classifier.classify(at(0)).neighbours.map((n) => n.referenceId)).toEqual([ids[0], ids[1]].sort((a, b) => a! - b!));
  });
});
