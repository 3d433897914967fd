/**
 * A Sparkplug host application for tests: subscribes to spBv1.0/#, decodes every payload with
 * Eclipse Tahu's sparkplug-payload, sends NCMD/DCMD and STATE.
 */
import { arrivals } from '../helpers/arrivals.js';
import { join } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { get } from 'sparkplug-payload';
import type { UMetric, UPayload } from 'sparkplug-payload/lib/sparkplugbpayload.js';
import { makeLabeledImages, tinyModel, writeConfig } from '../helpers/daemon.js';
import { whenConnected } from '../helpers/mosquitto.js';

const codec = get('spBv1.0')!;

export interface SparkplugMessage {
  topic: string;
  verb: string;
  device: string | null;
  payload: UPayload;
  receivedAt: number;
}

/** The first DDATA that carried an event id: its index in `messages` and whether it was historical. */
export interface EventArrival {
  historical: boolean;
  index: number;
}

export interface TestHost {
  messages: SparkplugMessage[];
  /** Event ids by first arrival, kept as messages come (waits check it on every message). */
  events: Map<string, EventArrival>;
  waitFor(done: (messages: SparkplugMessage[]) => boolean, timeoutMs?: number): Promise<void>;
  publish(topic: string, payload: Buffer | string, retain?: boolean): Promise<void>;
  command(verb: 'NCMD' | 'DCMD', metrics: UMetric[], device?: string): Promise<void>;
  state(online: boolean, timestamp?: number): Promise<void>;
  close(): Promise<void>;
}

export const group = 'plant';
export const node = 'line-1';
export const device = 'cam-1';
export const hostId = 'scada';

export async function startHost(url: string, clientId = `host-${process.pid}`): Promise<TestHost> {
  // A persistent session: the subscription survives a broker restart (with persistence on).
  const client: MqttClient = connect(url, { protocolVersion: 5, clientId, clean: false, properties: { sessionExpiryInterval: 300 }, reconnectPeriod: 100 });
  client.on('error', () => undefined);
  const messages: SparkplugMessage[] = [];
  const events = new Map<string, EventArrival>();
  const waits = arrivals(messages);
  client.on('message', (topic, payload) => {
    const parts = topic.split('/');
    // Its own commands and STATE come back on spBv1.0/#: not the edge node's messages.
    if (parts[1] === 'STATE' || parts[2] === 'NCMD' || parts[2] === 'DCMD') return;
    const message: SparkplugMessage = { topic, verb: parts[2]!, device: parts[4] ?? null, payload: codec.decodePayload(payload), receivedAt: Date.now() };
    const id = message.verb === 'DDATA' ? metric(message, 'Event/Id') : undefined;
    if (id && !events.has(String(id.value))) events.set(String(id.value), { historical: id.isHistorical === true, index: messages.length });
    messages.push(message);
    waits.arrived();
  });
  await whenConnected(client, url, 'test SCADA host');
  await client.subscribeAsync('spBv1.0/#', { qos: 1 });
  return {
    messages,
    events,
    waitFor: (done, timeoutMs = 15_000) =>
      waits.waitFor(done, timeoutMs, () => `Sparkplug messages; last messages: ${messages.slice(-5).map((m) => `${m.verb} seq=${String(m.payload.seq)}`).join(', ')}`),
    publish: async (topic, payload, retain = false) => {
      await client.publishAsync(topic, payload, { qos: 1, retain });
    },
    command: async (verb, metrics, dev = device) => {
      const topic = verb === 'NCMD' ? `spBv1.0/${group}/NCMD/${node}` : `spBv1.0/${group}/DCMD/${node}/${dev}`;
      await client.publishAsync(topic, Buffer.from(codec.encodePayload({ timestamp: Date.now(), metrics })), { qos: 1 });
    },
    state: async (online, timestamp = Date.now()) => {
      await client.publishAsync(`spBv1.0/STATE/${hostId}`, JSON.stringify({ online, timestamp }), { qos: 1, retain: true });
    },
    close: () => client.endAsync(true),
  };
}

/** A metric's value by name, or undefined when the message does not carry it. */
export function metric(message: SparkplugMessage, name: string): UMetric | undefined {
  return message.payload.metrics?.find((m) => m.name === name);
}

export const num = (value: unknown): number => (typeof value === 'number' ? value : Number(String(value)));

/** A daemon config for profile sparkplug; threshold 0 makes every frame an anomaly (an event each). */
export async function sparkplugConfig(dir: string, url: string, options: { primaryHostId?: string; fps?: number; profile?: string; http?: boolean } = {}): Promise<string> {
  const frames = await makeLabeledImages(join(dir, 'frames'), 3);
  return writeConfig(dir, {
    site: 'site-a',
    line: node,
    camera: device,
    stateDir: join(dir, 'state'),
    model: tinyModel,
    capture: { source: 'replay', replay: { folder: join(frames, 'good'), fps: options.fps ?? 20, loop: true } },
    enroll: { folder: await makeLabeledImages(join(dir, 'refs')) },
    knn: { threshold: 0 },
    // keepalive 1 s: a written event is deleted from the outbox after 1.5 s on a live connection.
    mqtt: { url, profile: options.profile ?? 'sparkplug', keepaliveS: 1 },
    sparkplug: { groupId: group, primaryHostId: options.primaryHostId ?? null, reportIntervalMs: 100 },
    http: { enabled: options.http ?? true, port: 0 },
    log: { format: 'json' },
  });
}
