/**
 * Inputs sent to a running daemon: raw HTTP requests on its port, malformed control commands over
 * HTTP and over the broker (`<root>cmd/<name>`), and mutated bundles through model.push. Each must
 * be answered with a 4xx or an error reply within its deadline.
 */
import { connect as connectMqtt, type MqttClient } from 'mqtt';
import sharp from 'sharp';
import { until } from '../ops/helpers.js';
import { bundleInput } from './bundles.js';
import { malformed, raw, rawLines } from './control-inputs.js';
import type { Draw } from './draw.js';
import { topicRoot, type Line } from './line.js';
import { Defect, type Tally } from './tally.js';

interface Reply {
  ok: boolean;
  error?: { code?: string };
}

/** A control reply: an error that names its code is a refusal; `internal` (a bug inside) is a crash. */
function judgeReply(status: number, body: string): 'accepted' | 'refused' {
  if (status === 0) throw new Defect(`no answer: ${body.slice(0, 100)}`, /no close/.test(body) ? 'hang' : 'crash');
  if (status >= 500) throw new Defect(`answered ${status}: ${body.slice(0, 200)}`);
  let reply: Reply | undefined;
  try {
    reply = JSON.parse(body) as Reply;
  } catch {
    reply = undefined;
  }
  if (reply?.error?.code === 'internal') throw new Defect(`internal error: ${body.slice(0, 200)}`);
  return status >= 400 || reply?.ok === false ? 'refused' : 'accepted';
}

const statusOf = (answer: string) => Number(/^HTTP\/1\.[01] (\d{3}) /.exec(answer)?.[1] ?? 0);

let pngCache: string | undefined;

/** A valid image for the commands that carry one (base64), made once. */
async function smallPng(): Promise<string> {
  pngCache ??= (await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } }).png().toBuffer()).toString('base64');
  return pngCache;
}

export async function fuzzHttp(tally: Tally, draw: Draw, line: Line, count: number): Promise<void> {
  const png = await smallPng();
  const token = line.token();
  for (let i = 0; i < count; i++) {
    const c = malformed(draw, png);
    const path = `/control/${encodeURIComponent(c.name)}`;
    const body = Buffer.from(c.body);
    const request = draw.pick<() => [string, Buffer]>([
      () => [`raw ${draw.pick(rawLines)}`, Buffer.from(`${draw.pick(rawLines)}\r\nHost: x\r\nConnection: close\r\n\r\n`)],
      () => ['garbage bytes', Buffer.concat([draw.bytes(draw.int(1, 2048)), Buffer.from('\r\n\r\n')])],
      () => ['huge header', Buffer.from(`GET /status HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(draw.int(16_000, 1_000_000))}\r\nConnection: close\r\n\r\n`)],
      () => ['many headers', Buffer.from(`GET /status HTTP/1.1\r\n${Array.from({ length: draw.int(100, 5_000) }, (_, n) => `X-${n}: ${n}\r\n`).join('')}Connection: close\r\n\r\n`)],
      () => ['bad header bytes', Buffer.concat([Buffer.from('GET /status HTTP/1.1\r\nX: '), draw.bytes(draw.int(1, 200)), Buffer.from('\r\nConnection: close\r\n\r\n')])],
      () => ['content-length that lies', Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${draw.pick(['-1', '1e3', 'abc', '99999999999999999999', `${body.length} , 5`])}\r\nConnection: close\r\n\r\n`), body])],
      () => [`${c.kind} to ${c.name.slice(0, 30)}`, Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`), body])],
    ])();
    await tally.probe('HTTP requests', `${request[0]}: ${request[1].subarray(0, 120).toString('latin1')}`, async () => {
      const answer = await raw(line.port, request[1]);
      // Node answers 431 to oversized headers and closes while they still arrive: the reset can
      // destroy the answer before it is read. Closed is refused; only a hang is a failure here.
      if (answer === '' && /header/.test(request[0])) return 'refused';
      return judgeReply(statusOf(answer), answer.slice(answer.indexOf('\r\n\r\n') + 4));
    }, 15_000);
  }
}

export async function fuzzBundles(tally: Tally, draw: Draw, line: Line, count: number): Promise<void> {
  const token = line.token();
  for (let i = 0; i < count; i++) {
    const { kind, archive } = bundleInput(draw, `fuzz-${draw.seed}-${i}`);
    await tally.probe('bundles (model.push)', kind, async () => {
      const res = await fetch(`${line.base}/control/model.push`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ bundle: archive.toString('base64') }),
        signal: AbortSignal.timeout(60_000),
      });
      return judgeReply(res.status, await res.text());
    }, 90_000);
  }
}

export async function fuzzMqtt(tally: Tally, draw: Draw, line: Line, count: number): Promise<void> {
  const png = await smallPng();
  // After an outage the daemon reconnects with a backoff: a command sent before would go unheard.
  await until(() => line.connected(), 'the daemon to be connected to the broker again', 60_000);
  const client: MqttClient = connectMqtt(line.broker.url, { protocolVersion: 5, reconnectPeriod: 0 });
  await new Promise<void>((resolve, reject) => client.once('connect', () => resolve()).once('error', reject));
  const waiting = new Map<string, (reply: Reply) => void>();
  client.on('message', (_, payload, packet) => {
    const id = packet.properties?.correlationData?.toString('utf8');
    if (id) waiting.get(id)?.(JSON.parse(payload.toString('utf8')) as Reply);
  });
  const replies = `reliability/replies/${draw.seed}`;
  await client.subscribeAsync(replies, { qos: 1 });
  try {
    for (let i = 0; i < count; i++) {
      const c = malformed(draw, png);
      const id = `m${i}`;
      await tally.probe('MQTT commands', `${c.kind} on cmd/${c.name.slice(0, 40)}: ${String(c.body).slice(0, 100)}`, async () => {
        const reply = new Promise<Reply>((resolve) => waiting.set(id, resolve));
        await client.publishAsync(`${topicRoot}cmd/${c.name}`, c.body, { qos: 1, properties: { responseTopic: replies, correlationData: Buffer.from(id) } });
        const got = await reply;
        if (got.error?.code === 'internal') throw new Defect(`internal error: ${JSON.stringify(got).slice(0, 200)}`);
        return got.ok ? 'accepted' : 'refused';
      }, 15_000);
      waiting.delete(id);
    }
  } finally {
    await client.endAsync(true);
  }
}
