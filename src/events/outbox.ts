import { UserError } from '../common/index.js';
import { isDiskFull, migrate, withoutFsync, type Db, type DiskReserve } from '../storage/index.js';
import type { AnomalyEvent } from './event.js';

/** Topic of anomaly events, relative to the topic root: the JSON profile's stream of the outbox. */
export const EVENTS_TOPIC = 'events';
/** The Sparkplug edge node's stream of the outbox (published as DDATA, not on a topic of the root). */
export const SPARKPLUG_STREAM = 'sparkplug';

/**
 * Thrown when SQLite reports the disk (or the database's size limit) full while an event is
 * written. The daemon should stop accepting events loudly: nothing half-written is kept.
 */
export class OutboxFullError extends UserError {
  constructor(cause: unknown) {
    super(
      'the disk holding the event outbox is full: new events cannot be stored',
      'free space on the state directory\'s disk (or start the MQTT broker so the backlog drains); the database is intact',
      { cause },
    );
  }
}

export interface OutboxRow {
  seq: number;
  eventId: string;
  /** Relative to the publisher's topic root, e.g. `events`. */
  topic: string;
  payload: string;
  createdAt: string;
}

const steps = [
  // AUTOINCREMENT: a seq is never reused after its row is deleted, so the publisher's
  // "everything after seq N" cursor stays valid while rows are acknowledged.
  `CREATE TABLE events_outbox (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     event_id TEXT NOT NULL UNIQUE,
     topic TEXT NOT NULL,
     payload TEXT NOT NULL,
     created_at TEXT NOT NULL
   )`,
  // Streams: the same event may wait once per way out (JSON topics, Sparkplug), each drained on its
  // own, so an event id is unique per topic rather than overall. The seq counter carries over.
  `CREATE TABLE events_outbox_v2 (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     event_id TEXT NOT NULL,
     topic TEXT NOT NULL,
     payload TEXT NOT NULL,
     created_at TEXT NOT NULL,
     UNIQUE (topic, event_id)
   );
   INSERT INTO events_outbox_v2 (seq, event_id, topic, payload, created_at) SELECT seq, event_id, topic, payload, created_at FROM events_outbox;
   DELETE FROM sqlite_sequence WHERE name = 'events_outbox_v2';
   INSERT INTO sqlite_sequence (name, seq)
     SELECT 'events_outbox_v2', COALESCE(MAX(seq), 0) FROM (SELECT seq FROM sqlite_sequence WHERE name = 'events_outbox' UNION ALL SELECT MAX(seq) FROM events_outbox);
   DROP TABLE events_outbox;
   ALTER TABLE events_outbox_v2 RENAME TO events_outbox;
   CREATE INDEX events_outbox_topic ON events_outbox (topic, seq);`,
];

/**
 * Durable queue of events waiting for the broker's PUBACK. A row is removed only by ack(),
 * so events survive broker outages, daemon restarts and power loss.
 */
export class Outbox {
  private readonly insert;
  /**
   * The peek statement per row limit. SQLite's planner reads a bound LIMIT's value, so a statement
   * with `LIMIT ?` is compiled again at every run: 3% of the main thread at full rate.
   */
  private readonly selectAfter = new Map<number, { all(topic: string, afterSeq: number): unknown[] }>();
  private readonly remove;
  private readonly count;
  private readonly countTopic;
  private readonly listeners = new Set<() => void>();
  private wakeScheduled = false;
  private deletedRows = 0;

  constructor(
    private readonly db: Db,
    /** The daemon's disk reserve: lets deletes through on a full disk (none for the CLI's short visits). */
    private readonly reserve?: DiskReserve,
  ) {
    migrate(db, 'events', steps);
    this.insert = db.prepare('INSERT INTO events_outbox (event_id, topic, payload, created_at) VALUES (?, ?, ?, ?)');
    this.remove = db.prepare('DELETE FROM events_outbox WHERE seq = ?');
    this.count = db.prepare('SELECT COUNT(*) AS n FROM events_outbox').pluck();
    this.countTopic = db.prepare('SELECT COUNT(*) AS n FROM events_outbox WHERE topic = ?').pluck();
  }

  /**
   * Stores an event; returns its seq. Works inside the caller's `db.transaction(...)` (or
   * `outbox.transaction(...)`), so a decision and its event commit together or not at all.
   */
  append(event: AnomalyEvent, topic: string = EVENTS_TOPIC): number {
    let seq: number;
    try {
      seq = Number(this.insert.run(event.id, topic, JSON.stringify(event), new Date().toISOString()).lastInsertRowid);
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      this.reserve?.full();
      throw new OutboxFullError(err);
    }
    this.scheduleWake();
    return seq;
  }

  /**
   * Runs `fn` in one transaction on the outbox's database. In WAL mode a full disk usually shows
   * at COMMIT rather than in append(), so this is where it becomes an OutboxFullError.
   */
  transaction<T>(fn: () => T): T {
    try {
      return this.db.transaction(fn)();
    } catch (err) {
      if (!(err instanceof OutboxFullError) && !isDiskFull(err)) throw err;
      this.reserve?.full();
      // The disk may have room again while the database was held at its size: then it goes through.
      if (this.reserve?.recover()) return this.transaction(fn);
      throw err instanceof OutboxFullError ? err : new OutboxFullError(err);
    }
  }

  /** Oldest rows of one stream first; `afterSeq` skips rows already sent on the current connection. */
  peek(limit: number, afterSeq = 0, topic: string = EVENTS_TOPIC): OutboxRow[] {
    let select = this.selectAfter.get(limit);
    if (!select) {
      if (!Number.isInteger(limit) || limit < 1) throw new Error(`outbox peek limit must be a whole number >= 1, got ${limit}`);
      select = this.db.prepare(
        `SELECT seq, event_id AS eventId, topic, payload, created_at AS createdAt FROM events_outbox WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ${limit}`,
      );
      this.selectAfter.set(limit, select);
    }
    return select.all(topic, afterSeq) as OutboxRow[];
  }

  /**
   * Deletes delivered rows in one transaction (a burst of PUBACKs together); returns how many
   * were still there. The commit is not fsync'd: the next event's commit makes it durable, and a
   * power cut before that only sends those events again (delivery is at least once), while an
   * fsync here cost as much main-thread time as the event's own. On a full disk the reserve makes
   * room for the deletes: they are what lets the backlog shrink and new events in again.
   */
  ack(seqs: readonly number[]): number {
    const deleteAll = this.db.transaction(() => seqs.reduce((n, seq) => n + this.remove.run(seq).changes, 0));
    const remove = () => withoutFsync(this.db, deleteAll);
    let removed: number;
    try {
      removed = remove();
      this.reserve?.recover();
    } catch (err) {
      if (!isDiskFull(err) || !this.reserve) throw err;
      this.reserve.full();
      if (!this.reserve.release()) throw err;
      removed = remove();
    }
    this.deletedRows += removed;
    return removed;
  }

  /** Rows deleted by ack() since this outbox was opened: lets a cached backlog() stay right between counts. */
  get deleted(): number {
    return this.deletedRows;
  }

  /** Rows waiting: of one stream, or all of them (what mqtt.outboxLimit bounds). */
  backlog(topic?: string): number {
    return (topic === undefined ? this.count.get() : this.countTopic.get(topic)) as number;
  }

  /**
   * Calls `listener` after rows were appended. Deferred to the next turn of the event loop so
   * the caller's transaction has committed (or rolled back) by then. Returns an unsubscribe.
   */
  onAppend(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private scheduleWake(): void {
    if (this.wakeScheduled || this.listeners.size === 0) return;
    this.wakeScheduled = true;
    setImmediate(() => {
      this.wakeScheduled = false;
      for (const listener of this.listeners) listener();
    });
  }
}
