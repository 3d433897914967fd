/**
 * A whole line for the reliability suite: real mosquitto (persistent, so a bounce keeps what it
 * took), a subscriber with a broker session, and the real daemon in a child process replaying
 * frames at full rate with every frame an event. It can kill -9 the daemon, stop the broker, and
 * account for every event id the daemon logged: received, still in the outbox, or lost.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { unitEnvironment } from '../../dist/bench/as-shipped.js';
import { makeLabeledImages, runLinewatch, writeConfig, tinyModel, type LogLine, type RunningLinewatch } from '../helpers/daemon.js';
import { collectMessages, freePort, startMosquitto, type Collector, type Mosquitto } from '../helpers/mosquitto.js';
import { makeFrames, until } from '../ops/helpers.js';
import type { Draw } from './draw.js';

export const site = 'soak';
export const topicRoot = `linewatch/${site}/line-1/cam-1/`;

const loggedIds = (logs: LogLine[]) => logs.filter((l) => l.msg === 'anomaly').map((l) => String(l.event));

/**
 * Waits until `run` has logged `events` event ids. Polled: waitForLog would run a count over all
 * of a long run's lines for each of its lines, quadratic over a soak.
 */
async function loggedAtLeast(run: RunningLinewatch, events: number): Promise<void> {
  await until(() => {
    if (run.child.exitCode !== null || run.child.signalCode !== null) throw new Error(`the daemon exited before logging ${events} events: ${run.stderr().slice(-2000)}`);
    return loggedIds(run.logs).length >= events;
  }, `the daemon to log ${events} events`, 600_000);
}

export interface Accounting {
  logged: number;
  received: number;
  inOutbox: number;
  /** Logged ids neither received nor in the outbox. */
  lost: string[];
}

/** The environment systemd/linewatch.service gives the daemon (its allocator): the soak measures memory as it ships. */
const asShipped = unitEnvironment();

export class Line {
  /** Every daemon run, in order: their logs hold the ids written to the outbox. */
  readonly runs: RunningLinewatch[] = [];
  private constructor(
    readonly dir: string,
    readonly broker: Mosquitto,
    readonly subscriber: Collector,
    readonly config: string,
    readonly port: number,
  ) {}

  static async open(dir: string): Promise<Line> {
    // A subscriber that lags behind a drained backlog must not lose messages to the broker's queue limit.
    const broker = await startMosquitto({ persistence: true, listenerConfig: ['max_queued_messages 0'] });
    const subscriber = await collectMessages(broker.url, `${topicRoot}events`, { persistentClientId: 'reliability-subscriber' });
    const port = await freePort();
    const config = writeConfig(dir, {
      site,
      line: 'line-1',
      camera: 'cam-1',
      stateDir: join(dir, 'state'),
      model: tinyModel,
      capture: { source: 'replay', replay: { folder: await makeFrames(join(dir, 'frames'), 20), fps: 0, loop: true } },
      enroll: { folder: await makeLabeledImages(join(dir, 'refs')) },
      // Threshold 0: every frame is an event, the heaviest load on the outbox.
      knn: { threshold: 0 },
      mqtt: { url: broker.url, statsIntervalS: 5 },
      // Pushed bundles reach the model checks without a signing key in the fuzz.
      models: { allowUnsigned: true },
      http: { port },
      log: { format: 'json' },
    });
    return new Line(dir, broker, subscriber, config, port);
  }

  get daemon(): RunningLinewatch | undefined {
    return this.runs[this.runs.length - 1];
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  token(): string {
    return readFileSync(join(this.dir, 'state', 'control-token'), 'utf8').trim();
  }

  async start(): Promise<RunningLinewatch> {
    const run = runLinewatch(['run', '--config', this.config], asShipped);
    this.runs.push(run);
    await run.waitForLog((l) => l.msg === 'running', 120_000);
    return run;
  }

  /**
   * Starts the daemon and kills it with SIGKILL at a random point: during start-up, or after a
   * random number of events. Then the database must pass SQLite's integrity check.
   */
  async killRound(draw: Draw): Promise<string> {
    const run = runLinewatch(['run', '--config', this.config], asShipped);
    this.runs.push(run);
    let point: string;
    if (draw.chance(0.3)) {
      const ms = draw.int(0, 3_000);
      await Promise.race([new Promise((resolve) => setTimeout(resolve, ms)), run.exited]);
      point = `${ms} ms after spawn`;
    } else {
      const events = draw.int(1, 1_500);
      await loggedAtLeast(run, events);
      point = `after ${events} events`;
    }
    run.child.kill('SIGKILL');
    await run.exited;
    const integrity = this.integrity();
    if (integrity !== 'ok') throw new Error(`integrity_check after kill -9 ${point}: ${integrity}`);
    return point;
  }

  /** Stops the broker while the daemon runs at full rate, until `events` more are stored, then starts it again. */
  async outage(events: number): Promise<void> {
    const daemon = this.daemon!;
    await this.broker.stop();
    const at = loggedIds(daemon.logs).length;
    await loggedAtLeast(daemon, at + events);
    await this.broker.restart();
  }

  /** The daemon's resident set in bytes (Linux /proc). */
  rss(): number {
    const pid = this.daemon?.child.pid;
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
  }

  /** The daemon's V8 heap in use, in bytes (prom-client's default gauge on /metrics): tells a leak in JS from native growth. */
  async heapUsed(): Promise<number> {
    const res = await fetch(`${this.base}/metrics`, { signal: AbortSignal.timeout(10_000) });
    return Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(await res.text())?.[1] ?? NaN);
  }

  /** Whether the daemon's MQTT session is connected (commands reach it only then). */
  async connected(): Promise<boolean> {
    const res = await fetch(`${this.base}/status`, { signal: AbortSignal.timeout(10_000) });
    return ((await res.json()) as { events: { mqtt: { connected: boolean } } }).events.mqtt.connected;
  }

  async decided(): Promise<number> {
    const res = await fetch(`${this.base}/status`, { signal: AbortSignal.timeout(10_000) });
    return ((await res.json()) as { decisions: { classified: number } }).decisions.classified;
  }

  /** Lets the running daemon deliver what it logged (up to a deadline), stops it, and accounts for every id. */
  async finish(): Promise<Accounting> {
    const logged = new Set(this.runs.flatMap((r) => loggedIds(r.logs)));
    await until(() => this.received().size >= logged.size, `the subscriber to receive ${logged.size} logged events (has ${this.received().size})`, 120_000).catch(() => undefined);
    await this.daemon?.stop('SIGTERM');
    const all = new Set(this.runs.flatMap((r) => loggedIds(r.logs)));
    const received = this.received();
    const waiting = this.outboxIds();
    return { logged: all.size, received: [...all].filter((id) => received.has(id)).length, inOutbox: waiting.size, lost: [...all].filter((id) => !received.has(id) && !waiting.has(id)) };
  }

  async close(): Promise<void> {
    for (const run of this.runs) await run.stop('SIGKILL');
    await this.subscriber.close();
    await this.broker.stop();
  }

  received(): Set<string> {
    return new Set(this.subscriber.messages.map((m) => (JSON.parse(m.payload) as { id: string }).id));
  }

  private open<T>(use: (db: Database.Database) => T): T {
    const db = new Database(join(this.dir, 'state', 'linewatch.db'));
    try {
      return use(db);
    } finally {
      db.close();
    }
  }

  integrity(): string {
    if (!existsSync(join(this.dir, 'state', 'linewatch.db'))) return 'ok';
    return this.open((db) => (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join('; '));
  }

  private outboxIds(): Set<string> {
    return this.open((db) => new Set((db.prepare("SELECT event_id AS id FROM events_outbox WHERE topic = 'events'").all() as { id: string }[]).map((r) => r.id)));
  }
}
