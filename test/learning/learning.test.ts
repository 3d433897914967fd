/**
 * The admission policy and its guards on a real SQLite store and the real tiny ONNX model (16-d),
 * with reference vectors placed by hand so each case is unmistakable, or exactly one guard's.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, setLogLevel } from '../../dist/common/index.js';
import { configSchema } from '../../dist/config/index.js';
import { OverrideStore, ReferenceStore } from '../../dist/knn/index.js';
import { Learning, type LearningSettings } from '../../dist/learning/index.js';
import { ModelManager } from '../../dist/models/index.js';
import type { DecidedFrame } from '../../dist/pipeline/index.js';
import { openDatabase, type Db } from '../../dist/storage/index.js';
import { random, unit } from '../knn/helpers.js';
import { repoRoot, tempDir, tinyModel } from '../helpers/daemon.js';

const dimension = 16;
const hour = 3_600_000;
const image = readFileSync(join(repoRoot, 'samples/line/frames/000000-good.jpg'));

/** A unit vector along axis `axis`, pushed off it by `offsets` (axis index -> amount). */
function near(axis: number, offsets: Record<number, number> = {}): Float32Array {
  const v = new Array<number>(dimension).fill(0);
  v[axis] = 1;
  for (const [i, x] of Object.entries(offsets)) v[Number(i)]! += x;
  return unit(v);
}

describe('learning: admission and its guards', () => {
  let db: Db;
  let store: ReferenceStore;
  let models: ModelManager;
  let clock: number;
  let learning: Learning;
  let seq = 0;
  const settings = (over: Partial<LearningSettings> = {}): LearningSettings => ({
    ...configSchema.parse({}).learning,
    enabled: true,
    neighbours: 3,
    radiusShare: 1,
    duplicateShare: 1e-4,
    ...over,
  });

  beforeEach(async () => {
    setLogLevel('error');
    const config = configSchema.parse({ stateDir: tempDir(), model: tinyModel });
    db = openDatabase(join(config.stateDir, 'linewatch.db'));
    store = new ReferenceStore(db, 'site/line/cam');
    models = await ModelManager.open(db, store, new OverrideStore(db), config, createLogger('test'), 'command');
    // Ten human `good` references around axis 0 and ten `dent` ones around axis 1, spread over axes 4..15.
    const next = random(3);
    const spread = (axis: number) => near(axis, Object.fromEntries(Array.from({ length: 12 }, (_, i) => [i + 4, next() * 0.1])));
    add('good', 'human', Array.from({ length: 10 }, () => spread(0)));
    add('dent', 'human', Array.from({ length: 10 }, () => spread(1)));
    clock = 10 * hour;
    learning = new Learning(store, models, settings(), createLogger('test'), () => clock);
    learning.start();
  });
  afterEach(async () => {
    await learning.stop();
    await models.close();
    db.close();
  });

  function add(label: string, source: 'human' | 'auto', vectors: Float32Array[]): number[] {
    const ids = store.addMany(models.active.key, vectors.map((vector, i) => ({ reference: { label, source, origin: `${label}-${source}-${i}-${vectors.length}` }, vector })));
    models.active.index.addMany(ids.map((referenceId, i) => ({ referenceId, vector: vectors[i]! })));
    return ids;
  }

  /** Peer references as the fleet sync imports them: labeledBy set when a person labeled them on their device, null when it admitted them. */
  function addPeer(label: string, labeledBy: string | null, vectors: Float32Array[]): number[] {
    const ids = store.addMany(models.active.key, vectors.map((vector, i) => ({ reference: { label, source: 'peer', origin: `peer:cam-z/${label}-${i}`, device: 'cam-z', labeledBy }, vector })));
    models.active.index.addMany(ids.map((referenceId, i) => ({ referenceId, vector: vectors[i]! })));
    return ids;
  }

  /** Hands one decided frame (decided by the real classifier) to learning and waits for its verdict. */
  async function offer(vector: Float32Array): Promise<void> {
    const model = models.active;
    const decided: DecidedFrame = { frame: { seq: ++seq, capturedAt: clock, data: image, origin: `frame-${seq}` }, vector, decision: model.classifier.classify(vector), model };
    learning.consume(decided);
    await learning.idle();
  }

  const refused = () => learning.status().lastHour.refused;
  const autos = (label = 'good') => store.countWhere({ label, source: 'auto' });
  /** A new good item: the mean of two human good references, so near both and a duplicate of neither. */
  function between(i: number, j: number): Float32Array {
    const ids = store.idsWhere({ label: 'good', source: 'human' });
    const packed = store.loadVectors(models.active.key, dimension, [ids[i]!, ids[j]!]);
    return unit(Array.from({ length: dimension }, (_, d) => packed.data[d]! + packed.data[dimension + d]!));
  }

  it('admits an unmistakable frame as an auto reference with its provenance, searchable at once', async () => {
    const vector = between(0, 1);
    await offer(vector);
    expect(learning.status().lastHour).toMatchObject({ admitted: 1, refused: {} });
    const [auto] = store.list({ source: 'auto' });
    expect(auto).toMatchObject({ label: 'good', modelKey: models.active.key, device: 'site/line/cam', origin: `frame:frame-${seq}#${seq}`, confirmedAt: null });
    expect(auto!.confidence).toBeGreaterThan(0);
    const admittedBy = JSON.parse(auto!.decision!) as { neighbours: { source: string }[]; frame: { seq: number } };
    expect(admittedBy.frame.seq).toBe(seq);
    expect(admittedBy.neighbours.some((n) => n.source === 'human')).toBe(true);
    // A model swap re-embeds every reference missing a vector from its stored image: this one has one.
    const missing = store.listMissingVectors('next-model@2').find((r) => r.id === auto!.id);
    expect(missing!.thumbnail!.length).toBeGreaterThan(0);
    expect(models.active.index.search(vector, 1)[0]!.referenceId).toBe(auto!.id);
  });

  it('refuses a frame far from everything, one the neighbours disagree on, and a near-duplicate', async () => {
    await offer(near(2));
    await offer(unit(Array.from({ length: dimension }, (_, d) => (d < 2 ? 1 : 0))));
    const ids = store.idsWhere({ label: 'good', source: 'human' });
    await offer(store.loadVectors(models.active.key, dimension, [ids[0]!]).data);
    expect(refused()).toEqual({ unknown: 1, disagree: 1, duplicate: 1 });
    expect(autos()).toBe(0);
  });

  it('refuses outside the radius, without a margin, and for a label with too few human references', async () => {
    learning.configure(settings({ radiusShare: 0.01 }));
    await offer(between(2, 3));
    learning.configure(settings({ marginRatio: 1e6 }));
    await offer(between(2, 3));
    learning.configure(settings({ minHumanReferences: 11 }));
    await offer(between(2, 3));
    expect(refused()).toEqual({ outside_radius: 1, no_margin: 1, few_human_references: 1 });
    expect(autos()).toBe(0);
  });

  it('never lets automatic references admit another alone', async () => {
    // Three auto points far out on axis 0's side: a frame among them has only auto neighbours.
    add('good', 'auto', [near(0, { 3: 0.5 }), near(0, { 3: 0.52 }), near(0, { 3: 0.48, 2: 0.01 })]);
    await offer(near(0, { 3: 0.5, 2: 0.005 }));
    expect(refused()).toEqual({ no_human_neighbour: 1 });
    expect(autos()).toBe(3);
  });

  it('keeps within the hourly, total and share caps, per label', async () => {
    learning.configure(settings({ perLabelPerHour: 2, perLabelTotal: 3, maxAutoShare: 1 }));
    for (let i = 0; i < 5; i++) await offer(between(i, i + 1));
    expect(autos()).toBe(2);
    expect(refused()).toEqual({ hourly_cap: 3 });
    clock += hour;
    for (let i = 5; i < 8; i++) await offer(between(i, i + 1));
    expect(autos()).toBe(3);
    expect(learning.status().lastHour.refused).toEqual({ total_cap: 2 });
    learning.configure(settings({ maxAutoShare: 3 / 14 }));
    await offer(between(0, 9));
    expect(autos()).toBe(3);
    expect(refused()).toMatchObject({ share_cap: 1 });
  });

  it("counts peers' automatic references in the share cap, not their labeled ones", async () => {
    learning.configure(settings({ maxAutoShare: 3 / 14 }));
    addPeer('good', 'ui:anna', [near(0, { 2: 0.5 }), near(0, { 2: 0.52 }), near(0, { 2: 0.54 })]);
    await offer(between(0, 1));
    expect(autos()).toBe(1);
    // 1 automatic of 14 good so far; three more a peer admitted make the next one the 5th of 18 (> 3/14).
    addPeer('good', null, [near(0, { 3: 0.5 }), near(0, { 3: 0.52 }), near(0, { 3: 0.54 })]);
    await offer(between(2, 3));
    expect(autos()).toBe(1);
    expect(refused()).toEqual({ share_cap: 1 });
  });

  it('expires automatic references never confirmed; those a person confirmed stay', async () => {
    learning.configure(settings({ expireAfterH: 2 }));
    await offer(between(0, 1));
    await offer(between(4, 5));
    const [second, first] = store.list({ source: 'auto' });
    // A person labels an item beside the first one "good": it is confirmed.
    const packed = store.loadVectors(models.active.key, dimension, [first!.id]);
    add('good', 'human', [unit(Array.from(packed.data, (x, d) => x + (d === 2 ? 0.001 : 0)))]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.get(first!.id)!.confirmedAt).toBe(clock);
    clock += 1.5 * hour;
    expect(learning.maintain()).toBe(0);
    clock += hour;
    expect(learning.maintain()).toBe(1);
    expect(store.get(second!.id)).toBeUndefined();
    expect(store.get(first!.id)).toBeDefined();
    expect(models.active.index.search(store.loadVectors(models.active.key, dimension, [first!.id]).data, 1)[0]!.referenceId).toBe(first!.id);
    expect(learning.status().lastHour.expired).toBe(1);
  });

  it("removes the automatic references a person's label contradicts, and counts it", async () => {
    await offer(between(0, 1));
    await offer(between(6, 7));
    const [kept, contradicted] = store.list({ source: 'auto' });
    const packed = store.loadVectors(models.active.key, dimension, [contradicted!.id]);
    // The same item, labeled a dent by a person.
    add('dent', 'human', [unit(Array.from(packed.data))]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.get(contradicted!.id)).toBeUndefined();
    expect(store.get(kept!.id)).toBeDefined();
    expect(models.active.index.search(packed.data, 5).map((n) => n.referenceId)).not.toContain(contradicted!.id);
    expect(learning.status()).toMatchObject({ lastHour: { conflicts: 1 }, total: { conflicts: 1 } });
  });

  it("a peer's reference a person labeled removes contradicting automatic ones, its own and peers' copies; a peer's automatic one removes none", async () => {
    await offer(between(6, 7));
    const [own] = store.list({ source: 'auto' });
    const item = store.loadVectors(models.active.key, dimension, [own!.id]).data;
    const [peerAuto] = addPeer('good', null, [unit(Array.from(item, (x, d) => x + (d === 2 ? 0.001 : 0)))]);
    // Another peer's self-training calls the same item a dent: no person said so, nothing goes.
    addPeer('dent', null, [unit(Array.from(item))]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.get(own!.id)).toBeDefined();
    expect(store.get(peerAuto!)).toBeDefined();
    // A person on a peer labeled it a dent.
    addPeer('dent', 'ui:anna', [unit(Array.from(item, (x, d) => x + (d === 3 ? 0.001 : 0)))]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.get(own!.id)).toBeUndefined();
    expect(store.get(peerAuto!)).toBeUndefined();
    expect(learning.status().total.conflicts).toBe(2);
  });
});
