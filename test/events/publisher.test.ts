import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'mqtt';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { createAnomalyEvent, Outbox, type AnomalyEvent } from '../../dist/events/index.js';
import { eventLink, type EventLink, type LinkOptions } from './link.js';
import { openDatabase, type Db } from '../../dist/storage/index.js';
import { collectMessages, startMosquitto, type Collector, type Mosquitto } from '../helpers/mosquitto.js';
import { decision } from './fixtures.js';

let dir: string;
let root: string;
const cleanups: (() => Promise<void> | void)[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'linewatch-publisher-'));
  root = `test/${randomUUID()}/`;
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  rmSync(dir, { recursive: true, force: true });
});

async function broker(options: Parameters<typeof startMosquitto>[0] = {}): Promise<Mosquitto> {
  const started = await startMosquitto(options);
  cleanups.push(() => started.stop());
  return started;
}

function database(name = 'linewatch.db'): Db {
  const db = openDatabase(join(dir, name));
  cleanups.push(() => {
    db.close();
  });
  return db;
}

function publisher(outbox: Outbox, url: string, options: Partial<LinkOptions> = {}): EventLink {
  const created = eventLink(outbox, {
    url,
    site: 'plant1',
    line: 'l2',
    camera: 'cam3',
    topicRoot: root,
    clientId: `linewatch-test-${randomUUID()}`,
    statsIntervalMs: 0,
    reconnectMinMs: 50,
    reconnectMaxMs: 300,
    ...options,
  });
  cleanups.push(() => created.stop({ flushTimeoutMs: 0 }));
  return created;
}

async function subscriber(url: string, persistentClientId?: string): Promise<Collector> {
  const collector = await collectMessages(url, `${root}events`, persistentClientId ? { persistentClientId } : {});
  cleanups.push(() => collector.close());
  return collector;
}

function record(outbox: Outbox, seq: number): AnomalyEvent {
  const event = createAnomalyEvent(decision(seq));
  outbox.transaction(() => outbox.append(event));
  return event;
}

/** Event ids in order of first arrival; duplicates (QoS 1 is at-least-once) are dropped. */
function firstArrivals(collector: Collector): string[] {
  return [...new Set(collector.messages.map((m) => (JSON.parse(m.payload) as AnomalyEvent).id))];
}

/** Polls `done` until the deadline; the failure names the condition it waited for. */
async function until(done: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for ${done.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

it('keeps events in the outbox while the broker is down and delivers them in order once it is up', async () => {
  // Broker persistence and a persistent subscriber session: the subscriber cannot be connected
  // while the broker is down, so the broker must queue for it whatever arrives first after restart.
  const mqtt = await broker({ persistence: true });
  const sub = await subscriber(mqtt.url, `sub-${randomUUID()}`);
  await mqtt.stop();

  const outbox = new Outbox(database());
  const pub = publisher(outbox, mqtt.url);
  pub.start();
  const events = Array.from({ length: 20 }, (_, i) => record(outbox, i));
  await until(() => pub.status().lastError !== null);
  expect(pub.status()).toMatchObject({ connected: false, backlog: 20, delivered: 0, lastPubackAt: null });
  expect(pub.status().lastError).toBe(`cannot reach the MQTT broker at ${mqtt.url} (ECONNREFUSED)`);

  await mqtt.restart();
  await sub.waitFor(() => firstArrivals(sub).length === events.length);
  expect(firstArrivals(sub)).toEqual(events.map((e) => e.id));
  expect(JSON.parse(sub.messages[0]!.payload)).toEqual(events[0]);
  await until(() => pub.status().backlog === 0);
  expect(pub.status()).toMatchObject({ connected: true, lastError: null, delivered: 20 });
  expect(pub.status().reconnects).toBeGreaterThan(0);
  expect(pub.status().lastPubackAt).not.toBeNull();
});

it('loses no event when the broker restarts in the middle of a stream', async () => {
  const mqtt = await broker({ persistence: true });
  const sub = await subscriber(mqtt.url, `sub-${randomUUID()}`);
  const outbox = new Outbox(database());
  const pub = publisher(outbox, mqtt.url, { inflight: 8 });
  pub.start();
  await until(() => pub.status().connected);

  // 200 events in bursts of 5; the broker goes down after burst 12 (events in flight) and comes
  // back after burst 28, so events are produced before, during and after the outage.
  const events: AnomalyEvent[] = [];
  let outage: Promise<void> = Promise.resolve();
  for (let burst = 0; burst < 40; burst++) {
    for (let i = 0; i < 5; i++) events.push(record(outbox, events.length));
    if (burst === 12) outage = mqtt.stop();
    if (burst === 28) outage = outage.then(() => mqtt.restart());
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await outage;

  await sub.waitFor(() => firstArrivals(sub).length === events.length, 20_000);
  expect(firstArrivals(sub)).toEqual(events.map((e) => e.id));
  await until(() => pub.status().backlog === 0);
  expect(pub.status().delivered).toBeGreaterThanOrEqual(200);
  expect(pub.status().reconnects).toBeGreaterThan(0);
});

it('delivers the backlog of a stopped publisher through a new one on the same database', async () => {
  const mqtt = await broker();
  await mqtt.stop();
  const firstDb = database();
  const firstOutbox = new Outbox(firstDb);
  const first = publisher(firstOutbox, mqtt.url);
  first.start();
  const events = Array.from({ length: 10 }, (_, i) => record(firstOutbox, i));
  await first.stop({ flushTimeoutMs: 200 });
  expect(firstOutbox.backlog()).toBe(10);
  firstDb.close();

  await mqtt.restart();
  const sub = await subscriber(mqtt.url);
  const outbox = new Outbox(database());
  const second = publisher(outbox, mqtt.url);
  second.start();
  await sub.waitFor(() => firstArrivals(sub).length === events.length);
  expect(firstArrivals(sub)).toEqual(events.map((e) => e.id));
  await until(() => outbox.backlog() === 0);
});

it('wakes on append and flushes the backlog on stop', async () => {
  const mqtt = await broker();
  const sub = await subscriber(mqtt.url);
  const outbox = new Outbox(database());
  const pub = publisher(outbox, mqtt.url);
  pub.start();
  await until(() => pub.status().connected);
  const first = record(outbox, 0);
  await sub.waitFor(() => firstArrivals(sub).includes(first.id));
  await until(() => pub.status().delivered === 1);

  const rest = Array.from({ length: 30 }, (_, i) => record(outbox, i + 1));
  await pub.stop({ flushTimeoutMs: 5_000 });
  expect(outbox.backlog()).toBe(0);
  await sub.waitFor(() => firstArrivals(sub).length === 31);
  expect(firstArrivals(sub)).toEqual([first, ...rest].map((e) => e.id));
});

it('publishes the stats the daemon supplies, periodically and not retained', async () => {
  const mqtt = await broker();
  const stats = await collectMessages(mqtt.url, `${root}stats`, { qos: 0 });
  cleanups.push(() => stats.close());
  let good = 0;
  const pub = publisher(new Outbox(database()), mqtt.url, { statsIntervalMs: 150, stats: () => ({ good: ++good, anomaly: 0, outbox: { backlog: 0, delivered: 0 } }) });
  pub.start();
  const received = await stats.waitFor((m) => m.length >= 3);
  const bodies = received.map((m) => JSON.parse(m.payload) as { schema: string; good: number; anomaly: number; time: string; outbox: { backlog: number } });
  expect(bodies[0]!.schema).toBe('linewatch/stats/1');
  expect(bodies.map((b) => b.good)).toEqual(bodies.map((_, i) => bodies[0]!.good + i));
  expect(bodies[0]).toMatchObject({ anomaly: 0, outbox: { backlog: 0, delivered: 0 } });
  expect(received.every((m) => !m.retain)).toBe(true);
});

it('tells an authorization failure apart from an unreachable broker', async () => {
  const mqtt = await broker({ allowAnonymous: false });
  const pub = publisher(new Outbox(database()), mqtt.url);
  pub.start();
  await until(() => pub.status().lastError !== null);
  expect(pub.status().connected).toBe(false);
  expect(pub.status().lastError).toMatch(/^the MQTT broker at mqtt:\/\/127\.0\.0\.1:\d+ does not authorize this client \(Connection refused: Not authorized\)/);
});

it('keeps an event the broker refuses (PUBACK reason 135) in the outbox and says why', async () => {
  // Anonymous clients may publish anything but the JSON events topic.
  const acl = join(dir, 'acl');
  writeFileSync(acl, `topic readwrite #\ntopic deny ${root}events\n`);
  const mqtt = await broker({ listenerConfig: [`acl_file ${acl}`] });
  const outbox = new Outbox(database());
  const pub = publisher(outbox, mqtt.url);
  pub.start();
  record(outbox, 0);
  // Either way the PUBACK came: refused (the error is set) or taken for an ack (the row is gone).
  await until(() => pub.status().lastError !== null || outbox.backlog() === 0);
  expect(outbox.backlog()).toBe(1);
  expect(pub.status().lastError).toBe(
    `the MQTT broker at ${mqtt.url} refused event seq 1 (Publish error: Not authorized): it stays in the outbox and is resent after the next reconnect`,
  );
  // A wrong delete would come at the end of the PUBACK's turn of the event loop.
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(outbox.backlog()).toBe(1);
  expect(pub.status()).toMatchObject({ connected: true, backlog: 1, delivered: 0, lastPubackAt: null });
});

/** Counts the events published on each connection and not yet acknowledged; returns the most at once. */
function watchInflight(link: EventLink): { most: number } {
  const seen = { most: 0 };
  link.session.onReady((connection) => {
    let now = 0;
    const publish = connection.publish.bind(connection);
    connection.publish = (topic, payload, options, done) => {
      seen.most = Math.max(seen.most, ++now);
      publish(topic, payload, options, (err) => {
        now--;
        done?.(err);
      });
    };
  });
  return seen;
}

it('publishes each event once at QoS 1 as JSON, as many unacknowledged as allowed and no more', async () => {
  // This broker takes at most 2 unacknowledged QoS 1 messages (its CONNACK's Receive Maximum).
  const mqtt = await broker({ listenerConfig: ['max_inflight_messages 2'] });
  const client = connect(mqtt.url, { protocolVersion: 5, clientId: `sub-${randomUUID()}` });
  cleanups.push(() => client.endAsync(true));
  const received: { qos: number; contentType: unknown; payloadFormat: unknown; id: string }[] = [];
  client.on('message', (_topic, payload, packet) => {
    received.push({ qos: packet.qos, contentType: packet.properties?.contentType, payloadFormat: packet.properties?.payloadFormatIndicator, id: (JSON.parse(payload.toString()) as AnomalyEvent).id });
  });
  await client.subscribeAsync(`${root}events`, { qos: 1 });
  const outbox = new Outbox(database());
  const pub = publisher(outbox, mqtt.url);
  const window = watchInflight(pub);
  const events = Array.from({ length: 40 }, (_, i) => record(outbox, i));
  pub.start();
  await until(() => outbox.backlog() === 0 && received.length >= events.length);
  expect(received.map((m) => m.id)).toEqual(events.map((e) => e.id));
  expect(received.every((m) => m.qos === 1 && m.contentType === 'application/json' && m.payloadFormat === true)).toBe(true);
  expect(pub.status()).toMatchObject({ connected: true, reconnects: 0, lastError: null, delivered: 40 });
  expect(window.most).toBe(2);

  // A broker that takes many: the drain's own limit (inflight) holds.
  const roomy = await broker();
  const second = new Outbox(database('second.db'));
  const limited = publisher(second, roomy.url, { inflight: 3 });
  const limitedWindow = watchInflight(limited);
  for (let i = 0; i < 20; i++) record(second, i);
  limited.start();
  await until(() => second.backlog() === 0);
  expect(limitedWindow.most).toBe(3);
});

it('refuses a bad broker URL, topic names and missing TLS files before connecting', () => {
  const outbox = new Outbox(database());
  const base = { url: 'mqtt://127.0.0.1:1883', site: 'plant1', line: 'l2', camera: 'cam3' };
  expect(() => eventLink(outbox, { ...base, url: 'http://user:secret@broker' })).toThrow(/^"http:\/\/user:\*\*\*@broker\/?" is not an MQTT broker URL$/);
  expect(eventLink(outbox, { ...base, url: 'mqtt://user:secret@127.0.0.1:1883' }).status().url).toBe('mqtt://user:***@127.0.0.1:1883');
  expect(() => eventLink(outbox, { ...base, camera: 'cam/3' })).toThrow('the camera name "cam/3" cannot be part of an MQTT topic');
  expect(() => eventLink(outbox, { ...base, topicRoot: 'plant/#' })).toThrow('contains a wildcard');
  expect(() => eventLink(outbox, { ...base, caFile: join(dir, 'missing-ca.pem') })).toThrow(/cannot read the MQTT caFile/);
});
