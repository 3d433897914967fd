import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { setLogFormat, setLogSink, type Logger } from '../../dist/common/index.js';
import { createAnomalyEvent, Outbox, OutboxDrain, SPARKPLUG_STREAM } from '../../dist/events/index.js';
import { MqttSession } from '../../dist/mqtt/index.js';
import { openDatabase, type Db } from '../../dist/storage/index.js';
import { collectMessages, freePort, startMosquitto } from '../helpers/mosquitto.js';
import { until } from '../ops/helpers.js';
import { decision } from './fixtures.js';

// The drain on its own (publisher.test.ts drives it with the rest of the events link): what
// stop() waits for, which stream it drains, and what it logs.
let dir: string;
let db: Db;
let root: string;
const cleanups: (() => unknown)[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'linewatch-drain-'));
  db = openDatabase(join(dir, 'linewatch.db'));
  root = `test/${randomUUID()}/`;
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

function recorder(): { log: Logger; lines: { level: string; msg: string; fields?: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ level, msg, ...(fields ? { fields } : {}) });
  const log: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
  return { log, lines };
}

function session(url: string): MqttSession {
  const created = new MqttSession({ url, clientId: `drain-${randomUUID()}`, reconnectMinMs: 50, reconnectMaxMs: 200 });
  cleanups.push(() => created.stop());
  return created;
}

/** A real broker, and a drain of a fresh outbox on a session connected to it. */
async function connectedDrain() {
  const broker = await startMosquitto();
  cleanups.push(() => broker.stop());
  const outbox = new Outbox(db);
  const mqtt = session(broker.url);
  const { log, lines } = recorder();
  const drain = new OutboxDrain(outbox, mqtt, { topicRoot: root, logger: log });
  drain.start();
  mqtt.start();
  await mqtt.whenReady(Date.now() + 5_000);
  return { broker, outbox, mqtt, lines, drain };
}

const record = (outbox: Outbox, seq: number, stream?: string) => outbox.transaction(() => outbox.append(createAnomalyEvent(decision(seq)), stream));

it('stop() returns once every event is acknowledged and deleted, not at the deadline', async () => {
  const { outbox, lines, drain } = await connectedDrain();
  for (let i = 0; i < 40; i++) record(outbox, i);
  // Half the deadline is a generous bound on a busy machine, and still tells "done" from "timed out".
  const started = Date.now();
  await drain.stop(started + 30_000);
  expect(outbox.backlog()).toBe(0);
  expect(Date.now() - started).toBeLessThan(15_000);
  expect(drain.status()).toMatchObject({ backlog: 0, delivered: 40, lastError: null });
  expect(lines).toContainEqual({ level: 'info', msg: 'delivering the outbox', fields: { backlog: 0 } });
});

it('stop() with nothing to send does not wait for an absent broker; before start() it just returns', async () => {
  const outbox = new Outbox(db);
  await new OutboxDrain(outbox, session(`mqtt://127.0.0.1:${await freePort()}`), { topicRoot: root }).stop(Date.now() + 10_000);
  const mqtt = session(`mqtt://127.0.0.1:${await freePort()}`);
  const drain = new OutboxDrain(outbox, mqtt, { topicRoot: root });
  drain.start();
  mqtt.start();
  const started = Date.now();
  await drain.stop(started + 30_000);
  expect(Date.now() - started).toBeLessThan(15_000);
});

it('stop() with nothing to send does not wait for a broker that takes the connection but never answers', async () => {
  const broker = await startMosquitto();
  cleanups.push(() => broker.stop());
  await broker.freeze();
  // A connect timeout past the deadline: only stop() itself can decide not to wait.
  const mqtt = new MqttSession({ url: broker.url, clientId: `drain-${randomUUID()}`, connectTimeoutMs: 60_000 });
  cleanups.push(() => mqtt.stop());
  const drain = new OutboxDrain(new Outbox(db), mqtt, { topicRoot: root });
  drain.start();
  mqtt.start();
  const started = Date.now();
  await drain.stop(started + 30_000);
  expect(Date.now() - started).toBeLessThan(15_000);
});

it('drains only its own stream, on <root><stream>', async () => {
  const broker = await startMosquitto();
  cleanups.push(() => broker.stop());
  const sub = await collectMessages(broker.url, `${root}#`);
  cleanups.push(() => sub.close());
  const outbox = new Outbox(db);
  for (let i = 0; i < 3; i++) record(outbox, i, SPARKPLUG_STREAM);
  record(outbox, 9);
  const mqtt = session(broker.url);
  const drain = new OutboxDrain(outbox, mqtt, { topicRoot: root, topic: SPARKPLUG_STREAM, logger: recorder().log });
  drain.start();
  mqtt.start();
  await until(() => outbox.backlog(SPARKPLUG_STREAM) === 0, 'the sparkplug stream delivered', 10_000);
  await sub.waitFor((m) => m.length >= 3);
  expect(sub.messages.map((m) => m.topic)).toEqual([`${root}sparkplug`, `${root}sparkplug`, `${root}sparkplug`]);
  expect(outbox.backlog('events')).toBe(1);
  await drain.stop(Date.now());
});

it('events in flight when the connection drops go again on the next connection, and are no refusal', async () => {
  const { broker, outbox, mqtt, drain } = await connectedDrain();
  // A frozen broker reads nothing: the events are published and wait for a PUBACK that never
  // comes. Killed, it drops the connection with all five in flight.
  await broker.freeze();
  for (let i = 0; i < 5; i++) record(outbox, i);
  await broker.kill();
  await until(() => mqtt.connection === null, 'the session to notice the lost connection', 10_000);
  // Lost, or unreachable if the first retry came already: either way not a refused event.
  expect(mqtt.status().lastError).toMatch(/^(lost the connection to|cannot reach) the MQTT broker/);
  expect(drain.status()).toMatchObject({ backlog: 5, delivered: 0, lastError: null });
  await broker.restart();
  await until(() => outbox.backlog() === 0, 'the events delivered after the reconnect', 10_000);
  expect(drain.status()).toMatchObject({ delivered: 5, lastError: null });
  await drain.stop(Date.now());
});

it('keeps delivered events it could not delete, says so, and sends them again on the next connection', async () => {
  const { broker, outbox, lines, drain } = await connectedDrain();
  // Writes fail once the event is stored, so the delete after its PUBACK does.
  record(outbox, 1);
  db.pragma('query_only = 1');
  await until(() => lines.some((l) => l.msg === 'could not delete delivered events from the outbox'), 'the warning about the failed delete', 10_000);
  expect(lines.find((l) => l.level === 'warn')?.fields).toMatchObject({ events: 1, error: expect.stringMatching(/readonly/i) });
  db.pragma('query_only = 0');
  expect(outbox.backlog()).toBe(1);
  await broker.restart();
  // Acknowledged again on the new connection, and deleted this time.
  await until(() => outbox.backlog() === 0, 'the kept event delivered again after the reconnect', 10_000);
  expect(drain.status().delivered).toBe(2);
  await drain.stop(Date.now());
});

it('logs as the events component when it is given no logger', async () => {
  const lines: string[] = [];
  setLogSink({ write: (line) => void lines.push(line) });
  setLogFormat('json');
  cleanups.push(() => {
    setLogSink({ write: (line) => process.stderr.write(line) });
    setLogFormat(process.stderr.isTTY ? 'text' : 'json');
  });
  const broker = await startMosquitto();
  cleanups.push(() => broker.stop());
  const mqtt = session(broker.url);
  const drain = new OutboxDrain(new Outbox(db), mqtt, { topicRoot: root });
  drain.start();
  mqtt.start();
  const started = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line['msg'] === 'delivering the outbox');
  await until(() => started() !== undefined, 'the drain to log that it delivers the outbox', 10_000);
  expect(started()).toMatchObject({ level: 'info', component: 'events', backlog: 0 });
  await drain.stop(Date.now());
});
