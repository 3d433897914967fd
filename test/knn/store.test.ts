import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UserError } from '../../dist/common/index.js';
import { ReferenceStore } from '../../dist/knn/index.js';
import { openDatabase, type Db } from '../../dist/storage/index.js';
import { random, tempFolder, unit } from './helpers.js';

const model = 'fmnist-triplet@1.0.0';

describe('ReferenceStore', () => {
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

  it('adds a reference with its vector, reads it back, and removes both', () => {
    const thumbnail = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]);
    const id = store.add({ label: 'scratch', source: 'human', origin: 'enroll/scratch/1.jpg', thumbnail, createdAt: 1_700_000_000_000 }, model, unit([1, 2, 3]));
    expect(store.get(id)).toEqual({
      id,
      label: 'scratch',
      source: 'human',
      origin: 'enroll/scratch/1.jpg',
      createdAt: 1_700_000_000_000,
      confidence: null,
      thumbnail,
      modelKey: model,
      device: null,
      decision: null,
      labeledBy: null,
      confirmedAt: null,
    });
    expect(store.vectorIds(model)).toEqual([id]);
    expect(store.remove(id)).toBe(true);
    expect(store.get(id)).toBeUndefined();
    expect(store.vectorIds(model)).toEqual([]);
    expect(store.remove(id)).toBe(false);
  });

  it('counts references by label and by source', () => {
    const v = unit([1, 0]);
    store.addMany(model, [
      { reference: { label: 'good', source: 'human', origin: 'a' }, vector: v },
      { reference: { label: 'good', source: 'auto', origin: 'daemon', confidence: 0.97 }, vector: v },
      { reference: { label: 'dent', source: 'peer', origin: 'cam-2' }, vector: v },
    ]);
    expect(store.count()).toBe(3);
    expect(Object.fromEntries(store.countByLabel())).toEqual({ dent: 1, good: 2 });
    expect(Object.fromEntries(store.countBySource())).toEqual({ auto: 1, human: 1, peer: 1 });
    expect([...store.labelsOf([1, 3, 99])]).toEqual([
      [1, 'good'],
      [3, 'dent'],
    ]);
  });

  it('looks up the labels and sources of many ids at once (more than one statement holds), leaving out removed and unknown ids', () => {
    const ids = store.addMany(
      model,
      Array.from({ length: 600 }, (_, i) => ({ reference: { label: `label-${i % 7}`, source: i % 2 ? ('auto' as const) : ('human' as const), origin: `${i}` }, vector: unit([1, i]) })),
    );
    const check = (removed: Set<number>) => {
      const labels = store.labelsOf([...ids, ...ids.slice(0, 3), 10_000_000]);
      const sources = store.sourcesOf(ids);
      expect(labels.size).toBe(600 - removed.size);
      expect(sources.size).toBe(600 - removed.size);
      ids.forEach((id, i) => {
        expect(labels.get(id)).toBe(removed.has(id) ? undefined : `label-${i % 7}`);
        expect(sources.get(id)).toBe(removed.has(id) ? undefined : i % 2 ? 'auto' : 'human');
      });
    };
    const removed = new Set(ids.filter((_, i) => i % 97 === 0));
    for (const id of removed) store.remove(id);
    check(removed);
    // Asked again (now remembered, not read), and after more removals, one in bulk.
    check(removed);
    const later = ids.filter((_, i) => i % 89 === 1);
    store.remove(later[0]!);
    store.removeMany(later.slice(1));
    check(new Set([...removed, ...later]));
  });

  it('round-trips vectors bit-exactly, packed in one contiguous array', () => {
    const next = random(7);
    const vectors = Array.from({ length: 50 }, () => Float32Array.from({ length: 24 }, () => next() * 1e-3 + next()));
    vectors[0]![0] = -0; // sign of zero and subnormals must survive too
    vectors[0]![1] = 1.4e-45;
    const ids = store.addMany(model, vectors.map((vector, i) => ({ reference: { label: 'good', source: 'human', origin: `${i}` }, vector })));
    const packed = store.loadVectors(model, 24);
    expect(packed.ids).toEqual(ids);
    expect(Buffer.from(packed.data.buffer, packed.data.byteOffset, packed.data.byteLength)).toEqual(
      Buffer.concat(vectors.map((v) => Buffer.from(v.buffer))),
    );
    const some = store.loadVectors(model, 24, [ids[9]!, ids[3]!, 123456]);
    expect(some.ids).toEqual([ids[3], ids[9]]);
    expect(Array.from(some.data.subarray(24, 48))).toEqual(Array.from(vectors[9]!));
  });

  it('adds in bulk as one transaction: one bad item stores nothing', () => {
    const v = unit([1, 1, 1]);
    const items = [
      { reference: { label: 'good', source: 'human' as const, origin: 'a' }, vector: v },
      { reference: { label: 'good', source: 'human' as const, origin: 'b' }, vector: v },
      { reference: { label: '', source: 'human' as const, origin: 'c' }, vector: v },
    ];
    expect(() => store.addMany(model, items)).toThrow(UserError);
    expect(store.count()).toBe(0);
    // A vector of another dimension for the same model key is refused the same way.
    store.add({ label: 'good', source: 'human', origin: 'a' }, model, v);
    expect(() =>
      store.addMany(model, [
        { reference: { label: 'good', source: 'human', origin: 'b' }, vector: v },
        { reference: { label: 'good', source: 'human', origin: 'c' }, vector: unit([1, 1]) },
      ]),
    ).toThrow(/bump the model version|does not fit/);
    expect(store.count()).toBe(1);
  });

  it('lists references lacking a vector for a new model key, page by page', () => {
    const ids = store.addMany(
      'old@1',
      [0, 1, 2, 3, 4].map((i) => ({ reference: { label: 'good', source: 'human' as const, origin: `${i}`, thumbnail: Buffer.from([i]) }, vector: unit([1, i]) })),
    );
    store.addVectors('new@2', [{ referenceId: ids[1]!, vector: unit([1, 2, 3]) }]);
    const first = store.listMissingVectors('new@2', { limit: 2 });
    expect(first.map((r) => r.id)).toEqual([ids[0], ids[2]]);
    expect(first[1]!.thumbnail).toEqual(Buffer.from([2]));
    expect(store.listMissingVectors('new@2', { limit: 2, afterId: first[1]!.id }).map((r) => r.id)).toEqual([ids[3], ids[4]]);
    expect(store.listMissingVectors('old@1')).toEqual([]);
  });

  it('keeps its tables across reopening (migrations run once)', () => {
    store.add({ label: 'good', source: 'human', origin: 'a' }, model, unit([1, 0]));
    db.close();
    db = openDatabase(join(folder.dir, 'linewatch.db'));
    store = new ReferenceStore(db);
    expect(store.count()).toBe(1);
  });

  it('records provenance: the model key, its own device unless the reference names one, what admitted it, who labeled it', () => {
    const own = new ReferenceStore(db, 'plant/line-1/cam-1');
    const human = own.add({ label: 'good', source: 'human', origin: 'a.png', labeledBy: 'cli' }, model, unit([1, 0]));
    const auto = own.add({ label: 'good', source: 'auto', origin: 'frame:7', confidence: 0.9, decision: '{"seq":7}' }, model, unit([0, 1]));
    const peer = own.add({ label: 'dent', source: 'peer', origin: 'plant/line-2/cam-1#4', device: 'plant/line-2/cam-1', labeledBy: 'ui' }, model, unit([1, 1]));
    expect(own.get(human)).toMatchObject({ modelKey: model, device: 'plant/line-1/cam-1', labeledBy: 'cli', decision: null, confirmedAt: null });
    expect(own.get(auto)).toMatchObject({ source: 'auto', device: 'plant/line-1/cam-1', decision: '{"seq":7}', confidence: 0.9, labeledBy: null });
    expect(own.list({ source: 'peer' })).toEqual([expect.objectContaining({ id: peer, device: 'plant/line-2/cam-1', labeledBy: 'ui' })]);
    expect(own.countBySourceAndLabel()).toEqual({ auto: { good: 1 }, human: { good: 1 }, peer: { dent: 1 } });
  });

  it('filters by label, source, age and confirmation, and confirms automatic references only', () => {
    const at = (createdAt: number, source: 'human' | 'auto', label = 'good') => store.add({ label, source, origin: `${createdAt}`, createdAt }, model, unit([1, createdAt]));
    const old = at(1000, 'auto');
    const fresh = at(5000, 'auto');
    const person = at(1000, 'human');
    const dent = at(3000, 'auto', 'dent');
    expect(store.idsWhere({ source: 'auto', createdBefore: 4000 })).toEqual([old, dent]);
    expect(store.idsWhere({ label: 'good', createdAfter: 999, createdBefore: 1001 })).toEqual([old, person]);
    expect(store.countWhere({ source: 'auto', label: 'good' })).toBe(2);
    expect(store.confirm([old, person], 6000)).toBe(1);
    expect(store.confirm([old], 7000)).toBe(0);
    expect(store.get(old)!.confirmedAt).toBe(6000);
    expect(store.get(person)!.confirmedAt).toBeNull();
    expect(store.idsWhere({ unconfirmed: true })).toEqual([fresh, dent]);
    expect(store.idsWhere({ unconfirmed: false })).toEqual([old]);
  });

  it('journals additions and removals, and tells listeners after the commit, never of a change rolled back', async () => {
    store.add({ label: 'good', source: 'human', origin: 'before anyone listened' }, model, unit([1, 2]));
    const heard: string[] = [];
    const stop = store.onChange((changes) => heard.push(...changes.map((c) => `${c.change} ${c.referenceId} ${c.label} ${c.source}`)));
    const a = store.add({ label: 'good', source: 'human', origin: 'a' }, model, unit([1, 0]));
    expect(heard).toEqual([]); // not before the commit's turn of the event loop is over
    expect(() =>
      db.transaction(() => {
        store.add({ label: 'dent', source: 'auto', origin: 'b' }, model, unit([0, 1]));
        throw new Error('rolled back');
      })(),
    ).toThrow('rolled back');
    store.remove(a);
    store.remove(a); // nothing to remove: nothing journaled
    await new Promise((resolve) => setImmediate(resolve));
    expect(heard).toEqual([`added ${a} good human`, `removed ${a} good human`]);
    const journal = store.changesSince(1);
    expect(store.changesSince(0)[0]!.origin).toBe('before anyone listened');
    expect(journal.map((c) => [c.change, c.referenceId, c.origin])).toEqual([
      ['added', a, 'a'],
      ['removed', a, 'a'],
    ]);
    expect(store.changesSince(journal[0]!.seq).map((c) => c.change)).toEqual(['removed']);
    expect(store.lastChange()).toBe(journal[1]!.seq);
    stop();
    store.add({ label: 'good', source: 'human', origin: 'c' }, model, unit([1, 1]));
    await new Promise((resolve) => setImmediate(resolve));
    expect(heard).toHaveLength(2);
  });

  it('prunes the journal past a month, when the store opens and after changes, but never an untold change nor the newest', async () => {
    const day = 86_400_000;
    const ids = [1, 2, 3].map((i) => store.add({ label: 'good', source: 'human', origin: `o${i}` }, model, unit([1, i])));
    store.remove(ids[0]!);
    const newest = store.lastChange();
    expect(store.pruneJournal(Date.now() + 29 * day)).toBe(0);
    expect(store.pruneJournal(Date.now() + 31 * day)).toBe(3);
    expect(store.changesSince(0).map((c) => c.seq)).toEqual([newest]);
    expect(store.lastChange()).toBe(newest);

    // A listener has not been told of these yet: they stay until it has.
    const heard: number[] = [];
    store.onChange((changes) => heard.push(...changes.map((c) => c.seq)));
    store.add({ label: 'good', source: 'human', origin: 'o4' }, model, unit([1, 4]));
    store.remove(ids[1]!);
    expect(store.pruneJournal(Date.now() + 31 * day)).toBe(1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(heard).toEqual([newest + 1, newest + 2]);

    // Old entries a daemon left behind go when the store opens.
    db.prepare('UPDATE knn_reference_changes SET at = at - ?').run(31 * day);
    new ReferenceStore(db);
    expect(store.changesSince(0).map((c) => c.seq)).toEqual([newest + 2]);
  });
});
