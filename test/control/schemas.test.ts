/**
 * The JSON Schemas in docs/schemas hold for what a running daemon really publishes and answers:
 * events, stats and command replies over a real mosquitto (MQTT 5 request/response), checked
 * with Ajv. commands.schema.json must be the one generated from the command definitions.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { connect, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandSchemas } from '../../dist/control/schemas.js';
import { makeLabeledImages, repoRoot, runLinewatch, tempDir, tinyModel, writeConfig } from '../helpers/daemon.js';
import { collectMessages, startMosquitto, type ReceivedMessage } from '../helpers/mosquitto.js';

const schemaDir = join(repoRoot, 'docs/schemas');
const readSchema = (file: string): Record<string, any> => JSON.parse(readFileSync(join(schemaDir, file), 'utf8'));
const ids = {
  event: 'https://linewatch.dev/schemas/event.schema.json',
  stats: 'https://linewatch.dev/schemas/stats.schema.json',
  reply: 'https://linewatch.dev/schemas/reply.schema.json',
  commands: 'https://linewatch.dev/schemas/commands.schema.json',
};
const commands = readSchema('commands.schema.json');

// strict: a keyword Ajv does not know (a typo in a schema) is an error, not silently ignored.
const ajv = new Ajv2020({ strict: true, allErrors: true });
addFormats(ajv);
for (const file of ['event.schema.json', 'stats.schema.json', 'reply.schema.json', 'commands.schema.json']) ajv.addSchema(readSchema(file));

/** Validates against a schema by `$id` (with an optional `#/$defs/...` fragment); returns Ajv's errors, [] when valid. */
function problems(id: string, value: unknown): string[] {
  const validate = ajv.getSchema(id);
  if (!validate) throw new Error(`no schema ${id}`);
  return validate(value) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`);
}
const paramsOf = (name: string) => `${ids.commands}#/$defs/${name}`;

const site = 'schemas';
const root = `linewatch/${site}/line-1/cam-1/`;
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

interface Asked {
  name: string;
  params: unknown;
  /** Sent instead of the parameters as JSON: a payload that is not JSON. */
  raw?: string;
}
const asked: Asked[] = [
  { name: 'status', params: {} },
  { name: 'classifier.set', params: { k: 3 } },
  { name: 'classifier.set', params: { threshold: null } },
  { name: 'classifier.set', params: { threshold: 2 } },
  { name: 'classifier.set', params: {} },
  { name: 'classifier.set', params: { treshold: 0.5 } },
  { name: 'label', params: { event: 'not-an-id', label: 'scratch' } },
  { name: 'reference.remove', params: { ids: [] } },
  { name: 'nope', params: {} },
  { name: 'status', params: undefined, raw: '{"threshold": 0.6' },
];

let received: ReceivedMessage[] = [];
let replies: { asked: Asked; reply: any }[] = [];
let httpReply: { status: number; body: any };

/** MQTT 5 request/response: one request per case, the replies matched by their Correlation Data. */
async function ask(url: string): Promise<{ asked: Asked; reply: any }[]> {
  const client: MqttClient = connect(url, { protocolVersion: 5, clientId: `scada-${randomUUID()}`, reconnectPeriod: 0 });
  cleanups.push(() => client.endAsync(true));
  const responseTopic = `scada/replies/${randomUUID()}`;
  const answers = new Map<number, any>();
  const all = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${answers.size} of ${asked.length} replies within 20 s`)), 20_000);
    client.on('message', (topic, payload, packet) => {
      const n = Number(packet.properties?.correlationData?.toString('utf8'));
      if (topic !== responseTopic || !Number.isInteger(n)) return;
      answers.set(n, JSON.parse(payload.toString('utf8')));
      if (answers.size === asked.length) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  await client.subscribeAsync(responseTopic, { qos: 1 });
  for (const [n, a] of asked.entries()) {
    await client.publishAsync(`${root}cmd/${a.name}`, a.raw ?? JSON.stringify(a.params), {
      qos: 1,
      properties: { responseTopic, correlationData: Buffer.from(String(n)) },
    });
  }
  await all;
  return asked.map((a, n) => ({ asked: a, reply: answers.get(n) }));
}

beforeAll(async () => {
  const dir = tempDir();
  const broker = await startMosquitto();
  cleanups.push(() => broker.stop());
  const sub = await collectMessages(broker.url, `${root}#`);
  cleanups.push(() => sub.close());
  const frames = await makeLabeledImages(join(dir, 'frames'), 3);
  const config = writeConfig(dir, {
    site,
    line: 'line-1',
    camera: 'cam-1',
    stateDir: join(dir, 'state'),
    model: tinyModel,
    capture: { source: 'replay', replay: { folder: join(frames, 'scratch'), fps: 20, loop: true } },
    enroll: { folder: await makeLabeledImages(join(dir, 'refs')) },
    // Threshold 0 makes every frame an anomaly, so events keep coming.
    knn: { threshold: 0 },
    mqtt: { url: broker.url, statsIntervalS: 1 },
    http: { port: 0 },
    log: { format: 'json' },
  });
  const daemon = runLinewatch(['run', '--config', config]);
  cleanups.push(() => daemon.stop('SIGKILL'));
  const running = await daemon.waitForLog((l) => l.msg === 'running');

  const count = (msgs: ReceivedMessage[], topic: string) => msgs.filter((m) => m.topic === `${root}${topic}`).length;
  await sub.waitFor((msgs) => count(msgs, 'events') >= 5 && count(msgs, 'stats') >= 3, 30_000);
  replies = await ask(broker.url);

  // The same API over HTTP: POST /control/<name> with the bearer token.
  const token = readFileSync(join(dir, 'state/control-token'), 'utf8').trim();
  const base = String(running.status).replace(/\/status$/, '');
  const res = await fetch(`${base}/control/classifier.set`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ k: 0 }) });
  httpReply = { status: res.status, body: await res.json() };
  received = [...sub.messages];
});

const payloads = (topic: string) => received.filter((m) => m.topic === `${root}${topic}`).map((m) => JSON.parse(m.payload) as Record<string, any>);

describe('docs/schemas: the JSON payloads linewatch publishes and answers', () => {
  it('commands.schema.json is the one generated from the command definitions', () => {
    expect(commands, 'docs/schemas/commands.schema.json is out of date: regenerate it with `npm run schemas`').toEqual(commandSchemas());
  });

  it('every event a running daemon published matches event.schema.json', () => {
    const events = payloads('events');
    expect(events.length).toBeGreaterThanOrEqual(5);
    for (const event of events) expect(problems(ids.event, event)).toEqual([]);
  });

  it('every stats message matches stats.schema.json', () => {
    const stats = payloads('stats');
    expect(stats.length).toBeGreaterThanOrEqual(3);
    for (const message of stats) expect(problems(ids.stats, message)).toEqual([]);
    expect(stats.at(-1)!.decisions.anomalies).toBeGreaterThan(0);
  });

  it('availability is the plain string online (retained), as docs/schemas/README.md says', () => {
    const available = received.filter((m) => m.topic === `${root}available`);
    expect(available.map((m) => m.payload)).toContain('online');
  });

  it('every MQTT 5 reply matches reply.schema.json, and the parameters schema agrees with the daemon on what it accepts', () => {
    const codes = replies.map(({ asked: a, reply }) => {
      expect(problems(ids.reply, reply), `reply to ${a.name} ${a.raw ?? JSON.stringify(a.params)}`).toEqual([]);
      if (a.raw === undefined && a.name in commands.$defs) {
        // Parameters that the schema accepts are the ones the daemon accepts.
        const accepted = problems(paramsOf(a.name), a.params).length === 0;
        expect(accepted, `${a.name} ${JSON.stringify(a.params)}: schema ${accepted ? 'accepts' : 'rejects'}, daemon answered ${JSON.stringify(reply)}`).toBe(reply.ok || reply.error.code !== 'bad_parameters');
      }
      return reply.ok ? 'ok' : reply.error.code;
    });
    expect(codes).toEqual(['ok', 'ok', 'ok', 'bad_parameters', 'bad_parameters', 'bad_parameters', 'bad_parameters', 'bad_parameters', 'unknown_command', 'bad_json']);
    expect(commands.$defs).not.toHaveProperty('nope');
  });

  it('an HTTP reply (POST /control/<name>) matches reply.schema.json too', () => {
    expect(httpReply.status).toBe(400);
    expect(httpReply.body).toMatchObject({ ok: false, error: { code: 'bad_parameters' } });
    expect(problems(ids.reply, httpReply.body)).toEqual([]);
    expect(problems(paramsOf('classifier.set'), { k: 0 })).not.toEqual([]);
  });

  it('rejects broken payloads, so the checks above can fail', () => {
    const event = payloads('events')[0]!;
    const { id: _, ...withoutId } = event;
    expect(problems(ids.event, withoutId)).toContainEqual(expect.stringContaining("must have required property 'id'"));
    expect(problems(ids.event, { ...event, id: 'not-a-uuid' })).not.toEqual([]);
    expect(problems(ids.event, { ...event, capturedAt: 'yesterday' })).not.toEqual([]);
    expect(problems(ids.event, { ...event, schema: 'linewatch/event/2' })).not.toEqual([]);
    expect(problems(ids.event, { ...event, extra: 1 })).not.toEqual([]);
    const stats = payloads('stats')[0]!;
    expect(problems(ids.stats, { ...stats, frames: { ...stats.frames, captured: '7' } })).not.toEqual([]);
    expect(problems(ids.stats, { ...stats, time: undefined })).not.toEqual([]);
    const reply = replies[0]!.reply;
    expect(problems(ids.reply, { ...reply, error: { code: 'x', message: 'y' } })).not.toEqual([]);
    expect(problems(ids.reply, { schema: 'linewatch/reply/1', ok: false, error: { message: 'no code' } })).not.toEqual([]);
  });
});
