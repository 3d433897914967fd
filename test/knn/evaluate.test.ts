import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compareModels, defaultClassifierSettings, gateModelUpdate, leaveOneOut, ReferenceStore, type LeaveOneOut } from '../../dist/knn/index.js';
import { openDatabase, type Db } from '../../dist/storage/index.js';
import { clusteredVectors, random, tempFolder, unit } from './helpers.js';

const settings = { ...defaultClassifierSettings };
const dimension = 16;
// Six part types: four kinds of good part, two defects; a third of the references are anomalies.
const clusterLabels = ['good', 'good', 'good', 'good', 'scratch', 'dent'];

/** A unit vector in the plane at `degrees` from the x axis. */
function at(degrees: number): Float32Array {
  const r = (degrees * Math.PI) / 180;
  return new Float32Array([Math.cos(r), Math.sin(r)]);
}

/** Figures as a caller would build them, for the gate rule alone. */
function figures(f1: number, auroc: number, references = 100): LeaveOneOut {
  return { modelKey: 'm@1', references, f1, auroc, precision: f1, recall: f1 };
}

describe('leave-one-out evaluation and the model gate', () => {
  let folder: ReturnType<typeof tempFolder>;
  let db: Db;
  let store: ReferenceStore;

  beforeEach(() => {
    folder = tempFolder();
    db = openDatabase(join(folder.dir, 'linewatch.db'));
    store = new ReferenceStore(db);
  });
  afterEach(() => {
    db.close();
    folder.remove();
  });

  /** 120 references under `good@1` (vectors clustered by label) and `random@1` (random vectors); returns their ids. */
  function enrollTwoModels(): number[] {
    const clustered = clusteredVectors(120, dimension, clusterLabels.length, 0.15, 7);
    const ids = store.addMany(
      'good@1',
      clustered.map((vector, i) => ({ reference: { label: clusterLabels[i % clusterLabels.length]!, source: 'human' as const, origin: `part-${i}.png` }, vector })),
    );
    const next = random(11);
    store.addVectors('random@1', ids.map((referenceId) => ({ referenceId, vector: unit(Array.from({ length: dimension }, next)) })));
    return ids;
  }

  it('decides each reference by its nearest others with the classifier rule: a hand-computed case', () => {
    // k = 2, unknown beyond 0.5 (60 degrees). Leaving each one out:
    //   good 0:    scratch 20, good 30  -> score d30/(d30+d20) = 0.69 -> anomaly (false positive)
    //   good 30:   scratch 20, good 0   -> score d30/(d30+d10) = 0.90 -> anomaly (false positive)
    //   scratch 20: good 30, good 0     -> no defect among the 2, so d10/(d10+0.5) = 0.03 -> good (false negative)
    //   dent 120:  nearest is good 30 at distance 1 > 0.5 -> unknown, score 1 (true positive)
    // precision 1/3, recall 1/2, F1 0.4; AUROC: the dent outranks both goods, the scratch neither: 2/4.
    store.addMany(
      'toy@1',
      ([['good', 0], ['good', 30], ['scratch', 20], ['dent', 120]] as const).map(([label, degrees]) => ({
        reference: { label, source: 'human' as const, origin: `${label}-${degrees}` },
        vector: at(degrees),
      })),
    );
    const result = leaveOneOut(store, 'toy@1', 2, { k: 2, threshold: 0.5, unknownDistance: 0.5, goodLabel: 'good' });
    expect(result).toMatchObject({ modelKey: 'toy@1', references: 4, auroc: 0.5 });
    expect(result.precision).toBeCloseTo(1 / 3, 12);
    expect(result.recall).toBeCloseTo(1 / 2, 12);
    expect(result.f1).toBeCloseTo(0.4, 12);
    expect(result.note).toBeUndefined();
    expect(result.byLabel?.map((m) => [m.label, m.support, m.recall])).toEqual([
      ['dent', 1, 0], // decided unknown, not dent
      ['good', 2, 0],
      ['scratch', 1, 0],
    ]);
  });

  it('scores a model whose vectors cluster by label high and one with random vectors low', () => {
    enrollTwoModels();
    const good = leaveOneOut(store, 'good@1', dimension, settings);
    const noise = leaveOneOut(store, 'random@1', dimension, settings);
    expect(good).toMatchObject({ modelKey: 'good@1', references: 120 });
    expect(good.f1).toBeGreaterThan(0.95);
    expect(good.auroc).toBeGreaterThan(0.95);
    expect(good.byLabel?.map((m) => [m.label, m.support])).toEqual([
      ['dent', 20],
      ['good', 80],
      ['scratch', 20],
    ]);
    expect(noise).toMatchObject({ modelKey: 'random@1', references: 120 });
    expect(noise.f1).toBeLessThan(0.6);
    expect(noise.auroc).toBeLessThan(0.7);
  });

  it('refuses a worse model with both sets of figures in the reason, and passes an equal one', () => {
    enrollTwoModels();
    const good = { modelKey: 'good@1', dimension, settings };
    const refused = gateModelUpdate(store, good, { modelKey: 'random@1', dimension, settings }, 0.02);
    const { active, candidate } = refused;
    expect(refused.pass).toBe(false);
    expect(refused.tolerance).toBe(0.02);
    expect(refused.reason).toBe(
      `the new model's F1 and AUROC fell more than the tolerance below the active model's: ` +
        `F1 ${candidate.f1.toFixed(3)} and AUROC ${candidate.auroc.toFixed(3)} against ${active.f1.toFixed(3)} and ${active.auroc.toFixed(3)} of the active model, ` +
        `leave-one-out over the same 120 references (tolerance 0.02)`,
    );

    const same = gateModelUpdate(store, good, good, 0.02);
    expect(same.pass).toBe(true);
    expect(same.reason).toMatch(/^the new model is within the tolerance of the active model: F1 1\.000 and AUROC \d\.\d{3} against 1\.000 and/);
  });

  it('fails only beyond the tolerance, on F1 or AUROC alone', () => {
    expect(compareModels(figures(0.9, 0.95), figures(0.885, 0.95), 0.02).pass).toBe(true);
    expect(compareModels(figures(0.9, 0.95), figures(0.95, 0.99), 0).pass).toBe(true);
    const auroc = compareModels(figures(0.9, 0.95), figures(0.9, 0.92), 0.02);
    expect(auroc.pass).toBe(false);
    expect(auroc.reason).toMatch(/^the new model's AUROC fell more than the tolerance below the active model's: F1 0\.900 and AUROC 0\.920 against 0\.900 and 0\.950/);
    expect(compareModels(figures(0.9, 0.95), figures(0.85, 0.95), 0.02).reason).toMatch(/^the new model's F1 fell/);
    expect(() => compareModels(figures(0.9, 0.95), figures(0.9, 0.95), Number.NaN)).toThrow(RangeError);
  });

  it('compares both models on the references that have vectors for both', () => {
    const ids = enrollTwoModels();
    // Hard references the new model has no vectors for (say their thumbnails were lost): random
    // directions, labelled defects. They lower the active model's own figures over everything.
    const next = random(23);
    store.addMany(
      'good@1',
      Array.from({ length: 30 }, (_, i) => ({
        reference: { label: 'scratch', source: 'human' as const, origin: `odd-${i}.png` },
        vector: unit(Array.from({ length: dimension }, next)),
      })),
    );
    // The new model re-embedded the first 120 references to exactly the vectors of the active one.
    const shared = store.loadVectors('good@1', dimension, ids);
    store.addVectors('good@2', ids.map((referenceId, i) => ({ referenceId, vector: shared.data.slice(i * dimension, (i + 1) * dimension) })));

    const everything = leaveOneOut(store, 'good@1', dimension, settings);
    expect(everything.references).toBe(150);
    const gate = gateModelUpdate(store, { modelKey: 'good@1', dimension, settings }, { modelKey: 'good@2', dimension, settings }, 0);
    expect(gate.active.references).toBe(120);
    expect(gate.candidate.references).toBe(120);
    // Same vectors on the same references: the very same figures, whatever the extra references did.
    expect(gate.candidate).toEqual({ ...gate.active, modelKey: 'good@2' });
    expect(gate.active.f1).not.toBe(everything.f1);
    expect(gate.pass).toBe(true);
    // Figures over different references are not comparable; the gate says so instead of judging.
    expect(() => compareModels(everything, gate.candidate, 0.02)).toThrow(/same references, got 120 against 150/);
  });

  it('skips with NaN figures and a note when there are too few references, and lets the update through', () => {
    const key = 'toy@1';
    const few = leaveOneOut(store, key, 2, settings);
    expect(few).toMatchObject({ modelKey: key, references: 0, note: 'only 0 references to evaluate toy@1 on; leave-one-out needs at least 2' });
    expect(few.f1).toBeNaN();
    expect(few.auroc).toBeNaN();

    store.add({ label: 'good', source: 'human', origin: 'a.png' }, key, at(0));
    expect(leaveOneOut(store, key, 2, settings).note).toBe('only 1 reference to evaluate toy@1 on; leave-one-out needs at least 2');
    store.add({ label: 'good', source: 'human', origin: 'b.png' }, key, at(5));
    const oneClass = leaveOneOut(store, key, 2, settings);
    expect(oneClass).toMatchObject({ references: 0, note: 'all 2 references are "good"; leave-one-out needs both good and defect references' });
    expect(oneClass.precision).toBeNaN();
    expect(oneClass.byLabel).toBeUndefined();

    const pass = compareModels(oneClass, figures(0.1, 0.2), 0.02);
    expect(pass.pass).toBe(true);
    expect(pass.reason).toBe(
      'the gate could not compare the models (all 2 references are "good"; leave-one-out needs both good and defect references), so the new model passes unchecked',
    );
    // The active model has figures but the new one has none: it cannot show it is as good.
    const refused = compareModels(figures(0.9, 0.95), oneClass, 0.02);
    expect(refused.pass).toBe(false);
    expect(refused.reason).toMatch(/^the new model could not be evaluated \(all 2 references.*\): F1 n\/a and AUROC n\/a against 0\.900 and 0\.950 of the active model$/);

    // Figures without a note (a caller's own): the reason still says what is missing.
    expect(compareModels(figures(Number.NaN, Number.NaN), figures(0.5, 0.5), 0.02).reason).toContain('(the active model has no figures)');
    expect(compareModels(figures(0.9, 0.95), figures(Number.NaN, Number.NaN), 0.02).reason).toContain('(it has no figures)');
  });

  it('skips when every reference is a defect, and refuses a negative tolerance by name', () => {
    const key = 'toy@1';
    store.add({ label: 'scratch', source: 'human', origin: 'a.png' }, key, at(0));
    store.add({ label: 'dent', source: 'human', origin: 'b.png' }, key, at(5));
    expect(leaveOneOut(store, key, 2, settings).note).toBe('all 2 references are defects (none is "good"); leave-one-out needs both good and defect references');
    expect(() => compareModels(figures(0.9, 0.95), figures(0.9, 0.95), -0.1)).toThrow('the gate tolerance must be a number >= 0, got -0.1');
  });
});
