/**
 * Fuzzes the control plane of a running daemon (real mosquitto, the real CLI in a child process)
 * with malformed MQTT commands and malformed HTTP requests while replayed frames are decided.
 * Each must be refused with an error answer; none may crash, hang or stall the daemon.
 *
 * The cases come from a seeded PRNG: a failure prints its seed, and
 * `FUZZ_SEED=<seed> npx vitest run test/control/fuzz.test.ts` repeats the same run.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as connectMqtt, type MqttClient } from 'mqtt';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { makeLabeledImages, runLinewatch, tempDir, tinyModel, writeConfig } from '../helpers/daemon.js';
import { freePort, startMosquitto } from '../helpers/mosquitto.js';
import { makeFrames } from '../ops/helpers.js';
import { malformed, raw, rawLines, type Case } from '../reliability/control-inputs.js';
import { Draw, fuzzSeed } from '../reliability/draw.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const seed = fuzzSeed();

interface Reply {
  schema: string;
  ok: boolean;
  error?: { code?: unknown; message?: unknown };
}

/** Runs `task` over `items`, `width` at a time. */
async function inBatches<T>(items: readonly T[], width: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map((item, j) => task(item, i + j)));
}

/** Whether `done` came to hold within timeoutMs (when not, the assertions say what is missing). */
async function until(done: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

describe('control plane fuzz (real daemon, real mosquitto, frames flowing)', () => {
  it('refuses every malformed MQTT command and HTTP request with an error, and keeps deciding', async () => {
    console.log(`control fuzz seed ${seed} (repeat with FUZZ_SEED=${seed})`);
    const draw = new Draw(seed);
    const dir = tempDir();
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const port = await freePort();
    const site = 'fuzz';
    const stateDir = join(dir, 'state');
    const config = writeConfig(dir, {
      site,
      line: 'line-1',
      camera: 'cam-1',
      stateDir,
      model: tinyModel,
      capture: { source: 'replay', replay: { folder: await makeFrames(join(dir, 'frames'), 20), fps: 0, loop: true } },
      enroll: { folder: await makeLabeledImages(join(dir, 'refs')) },
      knn: { threshold: 0.5 },
      mqtt: { url: broker.url },
      http: { port },
      log: { format: 'json' },
    });
    const daemon = runLinewatch(['run', '--config', config]);
    cleanups.push(() => daemon.stop('SIGKILL'));
    await daemon.waitForLog((l) => l.msg === 'running');
    const base = `http://127.0.0.1:${port}`;
    const token = readFileSync(join(stateDir, 'control-token'), 'utf8').trim();
    const status = async () => (await (await fetch(`${base}/status`, { signal: AbortSignal.timeout(10_000) })).json()) as { decisions: { classified: number }; events: { mqtt: { connected: boolean; commands: { answered: number; dropped: number } } } };
    const classified = async () => (await status()).decisions.classified;
    const png = (await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } }).png().toBuffer()).toString('base64');

    // --- MQTT: a client asking on the command topics, its replies matched by correlation data.
    const client: MqttClient = connectMqtt(broker.url, { protocolVersion: 5, reconnectPeriod: 0 });
    cleanups.push(() => client.endAsync(true));
    await new Promise<void>((resolve, reject) => client.once('connect', () => resolve()).once('error', reject));
    const replyTopic = 'fuzz-client/replies';
    const replies = new Map<string, Reply[]>();
    const strays: string[] = [];
    client.on('message', (topic, payload, packet) => {
      const id = packet.properties?.correlationData?.toString('utf8');
      if (!(topic === replyTopic || topic.startsWith(`${replyTopic}/`)) || id === undefined) return void strays.push(`${topic} ${payload.toString('utf8').slice(0, 100)}`);
      const seen = replies.get(id) ?? [];
      seen.push(JSON.parse(payload.toString('utf8')) as Reply);
      replies.set(id, seen);
    });
    // `a/#` matches `a` too (one subscription: overlapping ones would each get a copy).
    await client.subscribeAsync(`${replyTopic}/#`, { qos: 1 });

    const commandTopic = (name: string) => `linewatch/${site}/line-1/cam-1/cmd/${name}`;
    const mqttCases = Array.from({ length: 1_100 }, () => malformed(draw, png));
    const tooLarge = Buffer.alloc(50 * 1024 * 1024, 0x7b);
    // Without a response topic, or with a wildcard one (which mosquitto lets through): nowhere to
    // answer, so dropped (and logged), with or without correlation data.
    const unanswerable = Array.from({ length: 60 }, (_, i) => {
      const correlationData = Buffer.from(`drop${i}`);
      return { ...malformed(draw, png), properties: draw.pick([{}, { correlationData }, { responseTopic: `${replyTopic}/+`, correlationData }, { responseTopic: '#' }]) };
    });
    const asked = new Map<string, Case>();

    // --- HTTP: POST /control/<name> with the token, requests without (or with a wrong) token, and raw bytes.
    type HttpCase = { kind: string; send: () => Promise<{ status: number; body: string }> };
    const post = (path: string, body: string | Buffer, headers: Record<string, string>) => async () => {
      const res = await fetch(`${base}${path}`, { method: 'POST', headers, body: typeof body === 'string' ? body : new Uint8Array(body), signal: AbortSignal.timeout(15_000) });
      return { status: res.status, body: await res.text() };
    };
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const statusOf = (answer: string) => ({ status: Number(/^HTTP\/1\.[01] (\d{3}) /.exec(answer)?.[1] ?? 0), body: answer });
    const httpCases: HttpCase[] = Array.from({ length: 1_100 }, (): HttpCase => {
      const c = malformed(draw, png);
      const path = `/control/${encodeURIComponent(c.name)}`;
      switch (draw.int(0, 9)) {
        case 0:
          return { kind: 'no token', send: post(path, c.body, { 'content-type': 'application/json' }) };
        case 1:
          return { kind: 'wrong token', send: post(path, c.body, { authorization: draw.pick([`Bearer ${token.slice(1)}`, 'Bearer', 'Basic Zm9vOmJhcg==', `Bearer ${token} x`, `bearer ${'a'.repeat(64)}`]) }) };
        case 2: {
          const line = draw.pick(rawLines);
          return { kind: `raw ${line}`, send: async () => statusOf(await raw(port, `${line}\r\nHost: x\r\nConnection: close\r\n\r\n`)) };
        }
        case 3: {
          const garbage = Buffer.concat([draw.bytes(draw.int(1, 2048)), Buffer.from('\r\n\r\n')]);
          return { kind: 'garbage bytes', send: async () => statusOf(await raw(port, garbage)) };
        }
        case 4: {
          // The body is shorter than its Content-Length and the client stops sending.
          const body = Buffer.from(typeof c.body === 'string' ? c.body : c.body.toString('utf8')).subarray(0, 20);
          const head = `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length + draw.int(1, 1000)}\r\nConnection: close\r\n\r\n`;
          return { kind: 'truncated body', send: async () => statusOf(await raw(port, Buffer.concat([Buffer.from(head), body]), { halfClose: true })) };
        }
        default:
          return { kind: c.kind, send: post(path, c.body, auth) };
      }
    });
    const httpResults: { kind: string; status: number; body: string }[] = [];

    // Commands come in over the daemon's MQTT session: wait until it is subscribed.
    const deadline = Date.now() + 20_000;
    while (!(await status()).events.mqtt.connected || (await classified()) === 0) {
      if (Date.now() > deadline) throw new Error('the daemon neither connected to MQTT nor decided a frame within 20 s');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const before = await classified();
    let during = before;
    const fuzzMqtt = async () => {
      const publish = (topic: string, payload: string | Buffer, properties: Record<string, unknown>) => client.publishAsync(topic, payload, { qos: 1, properties });
      await publish(commandTopic('classifier.set'), tooLarge, { responseTopic: replyTopic, correlationData: Buffer.from('too-large') });
      asked.set('too-large', { kind: 'too large', name: 'classifier.set', body: '' });
      // A batch at a time, each answered before the next: mosquitto queues at most 1,000 messages
      // (max_queued_messages) for a subscriber that lags, and silently drops the rest.
      let stalled = false;
      await inBatches(mqttCases, 100, async (c, i) => {
        const id = `c${i}`;
        asked.set(id, c);
        // Some on sub-topics of the reply topic, as requesters that demultiplex by topic do.
        await publish(commandTopic(c.name), c.body, { responseTopic: i % 3 === 0 ? `${replyTopic}/${i}` : replyTopic, correlationData: Buffer.from(id) });
        // Once one reply is missing, the rest are sent without waiting: the test fails in seconds, not at its timeout.
        if (!stalled && !(await until(() => replies.has(id), 10_000))) stalled = true;
        if (i === mqttCases.length / 2) during = await classified();
      });
      await inBatches(unanswerable, 30, async (c) => {
        await publish(commandTopic(c.name), c.body, c.properties);
      });
      await until(async () => (await status()).events.mqtt.commands.dropped >= unanswerable.length, 10_000);
    };
    const fuzzHttp = async () => {
      const huge = await post('/control/classifier.set', tooLarge, auth)().catch((err: Error) => ({ status: 0, body: `${err.message} ${String(err.cause)}` }));
      httpResults.push({ kind: 'too large', ...huge });
      await inBatches(httpCases, 50, async (c) => {
        const result = await c.send().catch((err: Error) => ({ status: 0, body: `${err.message} ${String(err.cause)}` }));
        httpResults.push({ kind: c.kind, ...result });
      });
    };
    await Promise.all([fuzzMqtt(), fuzzHttp()]);

    // The stragglers of a stalled run, and a moment for duplicate replies to show (the daemon must send one to each command).
    await until(() => replies.size >= asked.size, 5_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const after = await classified();
    const final = await status();

    const report = `seed ${seed}`;
    const unanswered = [...asked].filter(([id]) => !replies.has(id)).map(([id, c]) => `${id} ${c.kind} ${c.name}`);
    expect(unanswered.slice(0, 20), `${report}: ${unanswered.length} MQTT commands without a reply (the first 20)`).toEqual([]);
    const wrong = [...asked].flatMap(([id, c]) => {
      const got = replies.get(id) ?? [];
      const reply = got[0];
      const fine = got.length === 1 && reply?.schema === 'linewatch/reply/1' && reply.ok === false && typeof reply.error?.code === 'string' && reply.error.code !== 'internal';
      return fine ? [] : [`${id} ${c.kind} ${c.name.slice(0, 40)} ${String(c.body).slice(0, 80)} -> ${JSON.stringify(got).slice(0, 200)}`];
    });
    expect(wrong, `${report}: MQTT replies that are not one error`).toEqual([]);
    expect(replies.get('too-large')?.[0]?.error?.code).toBe('too_large');
    expect(strays, `${report}: messages on other topics`).toEqual([]);
    expect([...replies.keys()].filter((id) => id.startsWith('drop')), 'replies to commands without a response topic').toEqual([]);
    expect(final.events.mqtt.commands).toEqual({ answered: asked.size, dropped: unanswerable.length });
    expect(daemon.logs.some((l) => l.msg === 'MQTT command without a response topic dropped')).toBe(true);

    expect(httpResults).toHaveLength(httpCases.length + 1);
    const notRefused = httpResults.filter((r) => !(r.status >= 400 && r.status < 500)).map((r) => `${r.kind}: ${r.status} ${r.body.slice(0, 200)}`);
    expect(notRefused, `${report}: HTTP requests not answered 4xx`).toEqual([]);
    expect(httpResults[0]).toMatchObject({ kind: 'too large', status: 413 });
    const controlReplies = httpResults.filter((r) => r.body.startsWith('{')).map((r) => JSON.parse(r.body) as Reply);
    expect(controlReplies.every((r) => r.ok === false && typeof r.error?.code === 'string')).toBe(true);

    // Still running, still serving, still deciding.
    expect(await Promise.race([daemon.exited.then(() => 'exited'), new Promise((resolve) => setTimeout(() => resolve('alive'), 100))])).toBe('alive');
    expect(during, 'decisions during the fuzz').toBeGreaterThan(before);
    expect(after, 'decisions after the fuzz').toBeGreaterThan(during);
    const stderr = daemon.stderr();
    expect(stderr).not.toMatch(/internal error|unhandledRejection|uncaughtException|^\s+at .+:\d+:\d+\)?$/m);
    // A refused bundle is logged as an error by the model manager (a failed push is news to the
    // operator); any other error line means a command or request went wrong inside the daemon.
    const errors = daemon.logs.filter((l) => l.level === 'error');
    expect(errors.map((l) => `${l.component}: ${l.msg} ${JSON.stringify(l).slice(0, 300)}`)).toEqual([]);
    console.log(`control fuzz: ${asked.size} MQTT commands answered, ${unanswerable.length} dropped, ${httpResults.length} HTTP requests refused; decisions ${before} -> ${during} -> ${after}`);
  }, 90_000);
});
