import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAnomalyEvent, EVENTS_TOPIC, Outbox, OutboxFullError, SPARKPLUG_STREAM } from '../../dist/events/index.js';
import { isUserError } from '../../dist/common/index.js';
import { openDatabase, type Db } from '../../dist/storage/index.js';
import { decision } from './fixtures.js';

let dir: string;
let db: Db;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'linewatch-outbox-'));
  db = openDatabase(join(dir, 'linewatch.db'));
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('anomaly event', () => {
  it('carries the decision and a time-ordered UUIDv7 id', () => {
    const events = Array.from({ length: 50 }, (_, i) => createAnomalyEvent({ ...decision(i), decidedAt: 1_700_000_000_500 }));
    const event = events[0]!;
    expect(event).toMatchObject({
      type: 'anomaly',
      capturedAt: new Date(1_700_000_000_000).toISOString(),
      decidedAt: new Date(1_700_000_000_500).toISOString(),
      site: 'plant1',
      line: 'l2',
      camera: 'cam3',
      score: 0.8,
      threshold: 0.5,
      label: 'scratch',
      unknown: false,
      neighbours: [{ referenceId: 1, label: 'scratch', distance: 0.12 }],
      model: { name: 'fmnist-triplet', version: '1.0.0' },
      frame: { seq: 0, origin: 'frame-0.png' },
    });
    expect(event.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const ids = events.map((e) => e.id);
    expect([...ids].sort()).toEqual(ids);
  });
});

describe('outbox', () => {
  it('keeps events in seq order until acknowledged, across reopening the database', () => {
    const outbox = new Outbox(db);
    const events = [0, 1, 2].map((i) => createAnomalyEvent(decision(i)));
    const seqs = events.map((e) => outbox.append(e));
    expect(outbox.backlog()).toBe(3);
    expect(outbox.peek(10).map((r) => r.eventId)).toEqual(events.map((e) => e.id));
    expect(JSON.parse(outbox.peek(1)[0]!.payload)).toEqual(events[0]);
    expect(outbox.peek(10, seqs[0]).map((r) => r.seq)).toEqual(seqs.slice(1));
    // Each limit is its own statement (a bound LIMIT is recompiled at every run): mixed, each holds.
    expect([2, 1, 10, 2, 1].map((limit) => outbox.peek(limit).length)).toEqual([2, 1, 3, 2, 1]);
    expect(() => outbox.peek(0)).toThrow(/whole number >= 1/);
    expect(outbox.ack([seqs[1]!])).toBe(1);
    expect(outbox.ack([seqs[1]!])).toBe(0);
    // The deletes commit without an fsync; the events after them are fsync'd again.
    expect(db.pragma('synchronous', { simple: true })).toBe(2);

    db.close();
    db = openDatabase(join(dir, 'linewatch.db'));
    const reopened = new Outbox(db);
    expect(reopened.peek(10).map((r) => r.eventId)).toEqual([events[0]!.id, events[2]!.id]);
    // A deleted seq is never reused, so a publisher's cursor stays valid.
    expect(reopened.append(createAnomalyEvent(decision(3)))).toBeGreaterThan(seqs[2]!);
  });

  it('counts the rows ack() deleted, not the acks asked for (the daemon subtracts them from a cached backlog)', () => {
    const outbox = new Outbox(db);
    const seqs = [0, 1, 2].map((i) => outbox.append(createAnomalyEvent(decision(i))));
    expect(outbox.ack([seqs[0]!, 99_999])).toBe(1);
    expect(outbox.ack([seqs[0]!, seqs[1]!, seqs[2]!])).toBe(2);
    expect(outbox.deleted).toBe(3);
    expect(outbox.backlog()).toBe(0);
  });

  it('commits with the caller\'s transaction or not at all', () => {
    const outbox = new Outbox(db);
    db.exec('CREATE TABLE decisions (frame INTEGER)');
    const record = db.transaction((seq: number, fail: boolean) => {
      db.prepare('INSERT INTO decisions VALUES (?)').run(seq);
      outbox.append(createAnomalyEvent(decision(seq)));
      if (fail) throw new Error('decision rejected');
    });
    record(1, false);
    expect(() => record(2, true)).toThrow('decision rejected');
    expect(outbox.backlog()).toBe(1);
    expect(db.prepare('SELECT COUNT(*) FROM decisions').pluck().get()).toBe(1);
  });

  it('wakes listeners once after appends commit', async () => {
    const outbox = new Outbox(db);
    const seen: number[] = [];
    outbox.onAppend(() => seen.push(outbox.backlog()));
    outbox.transaction(() => {
      outbox.append(createAnomalyEvent(decision(1)));
      outbox.append(createAnomalyEvent(decision(2)));
    });
    expect(seen).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toEqual([2]);
  });

  it('refuses new events with OutboxFullError when the disk is full, keeping what it has', () => {
    const outbox = new Outbox(db);
    outbox.append(createAnomalyEvent(decision(0)));
    // max_page_count makes SQLite report SQLITE_FULL exactly as a full disk does.
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.pragma(`max_page_count = ${pages}`);
    const big = { ...decision(1), label: 'x'.repeat(64 * 1024) };

    const standalone = (): number => outbox.append(createAnomalyEvent(big));
    expect(standalone).toThrow(OutboxFullError);
    const inTransaction = (): number => outbox.transaction(() => outbox.append(createAnomalyEvent(big)));
    expect(inTransaction).toThrow(OutboxFullError);
    try {
      standalone();
    } catch (err) {
      expect(isUserError(err)).toBe(true);
      expect((err as Error).message).toMatch(/disk .* full/);
    }
    expect(outbox.backlog()).toBe(1);
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    try {
      standalone();
    } catch (err) {
      expect((err as OutboxFullError).hint).toBe("free space on the state directory's disk (or start the MQTT broker so the backlog drains); the database is intact");
      expect((err as Error).cause).toMatchObject({ code: 'SQLITE_FULL' });
    }
  });

  it('turns a full disk met anywhere in its transaction into OutboxFullError, and lets any other error through as it is', () => {
    const outbox = new Outbox(db);
    db.exec('CREATE TABLE decisions (note TEXT)');
    const bug = new Error('decision rejected');
    let thrown: unknown;
    try {
      outbox.transaction(() => {
        throw bug;
      });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBe(bug);
    db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
    // The caller's own write fills the disk, not append(): the transaction still says it is full.
    expect(() => outbox.transaction(() => db.prepare('INSERT INTO decisions VALUES (?)').run('x'.repeat(64 * 1024)))).toThrow(OutboxFullError);
  });

  it('wakes again on a later turn, and not a listener that unsubscribed', async () => {
    const outbox = new Outbox(db);
    let woken = 0;
    let gone = 0;
    outbox.onAppend(() => woken++);
    const unsubscribe = outbox.onAppend(() => gone++);
    unsubscribe();
    for (const seq of [1, 2]) {
      outbox.append(createAnomalyEvent(decision(seq)));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(woken).toBe(2);
    expect(gone).toBe(0);
  });

  it('names its streams as the rows store them', () => {
    // Stored in every row's topic: renaming one would strand the rows of an upgraded device.
    expect([EVENTS_TOPIC, SPARKPLUG_STREAM]).toEqual(['events', 'sparkplug']);
  });
});

describe('outbox streams', () => {
  it('keeps one event once per stream, each peeked, counted and acknowledged on its own', () => {
    const outbox = new Outbox(db);
    const events = [0, 1, 2].map((i) => createAnomalyEvent(decision(i)));
    outbox.transaction(() => {
      for (const event of events) for (const stream of ['events', 'sparkplug']) outbox.append(event, stream);
    });
    expect(outbox.backlog()).toBe(6);
    expect(outbox.backlog('sparkplug')).toBe(3);
    const json = outbox.peek(10, 0, 'events');
    const sparkplug = outbox.peek(10, 0, 'sparkplug');
    expect(json.map((r) => r.eventId)).toEqual(events.map((e) => e.id));
    expect(sparkplug.map((r) => r.eventId)).toEqual(events.map((e) => e.id));
    outbox.ack(json.map((r) => r.seq));
    expect(outbox.backlog('events')).toBe(0);
    expect(outbox.peek(10, 0, 'sparkplug')).toHaveLength(3);
    // The same event twice in one stream is still refused.
    expect(() => outbox.append(events[0]!, 'sparkplug')).toThrow(/UNIQUE/);
  });

  it('migrates a database of the first schema: rows, order and the seq counter carry over', () => {
    db.exec(`CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
      INSERT INTO schema_version VALUES ('events', 1);
      CREATE TABLE events_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL);`);
    const insert = db.prepare("INSERT INTO events_outbox (event_id, topic, payload, created_at) VALUES (?, 'events', ?, '2026-01-01')");
    const old = [0, 1, 2, 3].map((i) => createAnomalyEvent(decision(i)));
    for (const event of old) insert.run(event.id, JSON.stringify(event));
    db.exec('DELETE FROM events_outbox WHERE seq = 4');
    const outbox = new Outbox(db);
    expect(outbox.peek(10).map((r) => r.eventId)).toEqual(old.slice(0, 3).map((e) => e.id));
    // seq 4 was used and deleted: a new row never takes it again.
    expect(outbox.append(createAnomalyEvent(decision(9)))).toBe(5);
  });
});
