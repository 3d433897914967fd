import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Outbox } from '../../dist/events/index.js';
import { eventLink } from './link.js';
import { openDatabase } from '../../dist/storage/index.js';
import { collectMessages, startMosquitto, type Mosquitto } from '../helpers/mosquitto.js';

let broker: Mosquitto;
let dir: string;
beforeAll(async () => {
  broker = await startMosquitto();
  dir = mkdtempSync(join(tmpdir(), 'linewatch-availability-'));
});
afterAll(async () => {
  await broker.stop();
  rmSync(dir, { recursive: true, force: true });
});

const payloads = (topic: string) => (messages: { topic: string; payload: string }[]) =>
  messages.filter((m) => m.topic === topic).map((m) => m.payload);

it('publishes online retained on connect and offline on a clean stop', async () => {
  const root = `test/${randomUUID()}/`;
  const db = openDatabase(join(dir, 'clean.db'));
  const publisher = eventLink(new Outbox(db), { url: broker.url, site: 'plant1', line: 'l2', camera: 'cam3', topicRoot: root, statsIntervalMs: 0 });
  publisher.start();
  const live = await collectMessages(broker.url, `${root}available`);
  await live.waitFor((m) => payloads(`${root}available`)(m).includes('online'));

  // A subscriber arriving later still learns the state: the message is retained.
  const late = await collectMessages(broker.url, `${root}available`);
  const [retained] = await late.waitFor((m) => m.length > 0);
  expect(retained).toMatchObject({ payload: 'online', retain: true });
  await late.close();

  await publisher.stop();
  await live.waitFor((m) => payloads(`${root}available`)(m).at(-1) === 'offline');
  const after = await collectMessages(broker.url, `${root}available`);
  const [retainedOffline] = await after.waitFor((m) => m.length > 0);
  expect(retainedOffline).toMatchObject({ payload: 'offline', retain: true });
  await Promise.all([live.close(), after.close()]);
  db.close();
});

it('leaves offline as its last will when the process dies without disconnecting', async () => {
  const root = `test/${randomUUID()}/`;
  const live = await collectMessages(broker.url, `${root}available`);
  const child = spawn(process.execPath, [
    join(import.meta.dirname, 'publisher-process.mjs'), join(dir, 'killed.db'), broker.url, root, `linewatch-test-${randomUUID()}`,
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('connected') && resolve());
    child.once('exit', (code) => reject(new Error(`publisher process exited early (${code})`)));
  });
  await live.waitFor((m) => payloads(`${root}available`)(m).includes('online'));

  child.kill('SIGKILL');
  await live.waitFor((m) => payloads(`${root}available`)(m).at(-1) === 'offline');
  const after = await collectMessages(broker.url, `${root}available`);
  const [retained] = await after.waitFor((m) => m.length > 0);
  expect(retained).toMatchObject({ payload: 'offline', retain: true });
  await Promise.all([live.close(), after.close()]);
});
