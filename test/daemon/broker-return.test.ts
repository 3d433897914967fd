import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { anomalyStreamConfig, runLinewatch, tempDir } from '../helpers/daemon.js';
import { collectMessages, startMosquitto } from '../helpers/mosquitto.js';
import { makeFrames } from '../ops/helpers.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const idOf = (payload: string) => (JSON.parse(payload) as { id: string }).id;

/** Longer than the old backoff's reach (1, 2, 4, 8, 16 s, then 30 s ±25%): the daemon must still be probing often. */
const outageMs = 35_000;

it('publishes again within seconds after a broker outage longer than the old backoff', async () => {
  const dir = tempDir();
  const broker = await startMosquitto({ persistence: true });
  cleanups.push(() => broker.stop());
  const sub = await collectMessages(broker.url, 'linewatch/back/line-1/cam-1/events', { persistentClientId: 'broker-return-subscriber' });
  cleanups.push(() => sub.close());
  // Every frame is an anomaly: events wait in the outbox while the broker is away.
  const config = await anomalyStreamConfig(dir, { site: 'back', frames: await makeFrames(join(dir, 'frames'), 6), fps: 10, mqtt: { url: broker.url } });
  const daemon = runLinewatch(['run', '--config', config]);
  cleanups.push(() => daemon.stop('SIGKILL'));
  await sub.waitFor((m) => m.length >= 5, 30_000);

  await broker.stop();
  await daemon.waitForLog((l) => l.msg === 'lost the connection to the MQTT broker');
  await new Promise((resolve) => setTimeout(resolve, outageMs));
  const before = new Set(sub.messages.map((m) => idOf(m.payload)));
  await broker.restart();
  const back = Date.now();
  // An event the daemon had not delivered before the outage (the broker may redeliver old ones to the subscriber).
  const isNew = (m: { payload: string }) => !before.has(idOf(m.payload));
  // The deadline is a wait, not the figure: the old backoff took 20-35 s here, the new one at most 3.75 s plus the connect.
  await sub.waitFor((m) => m.some(isNew), 15_000);
  const first = sub.messages.find(isNew)!;
  console.info(`broker back after ${outageMs / 1000} s away: first new event received ${first.receivedAt - back} ms later`);
  expect(daemon.logs.filter((l) => l.msg === 'connected to the MQTT broker')).toHaveLength(2);
  expect(await daemon.stop()).toBe(0);
}, 120_000);
