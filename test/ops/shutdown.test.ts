import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { makeLabeledImages, runLinewatch, tempDir, tinyModel, writeConfig, type LogLine, type RunningLinewatch } from '../helpers/daemon.js';
import { collectMessages, startMosquitto, type Collector } from '../helpers/mosquitto.js';
import { makeFrames } from './helpers.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const topic = 'linewatch/ops/line-1/cam-1/events';
const recorded = (logs: LogLine[]) => logs.filter((l) => l.msg === 'anomaly').map((l) => String(l.event));
const received = (sub: Collector) => new Set(sub.messages.map((m) => (JSON.parse(m.payload) as { id: string }).id));

function outboxIds(stateDir: string): Set<string> {
  const db = new Database(join(stateDir, 'linewatch.db'), { readonly: true });
  try {
    return new Set((db.prepare('SELECT event_id AS id FROM events_outbox').all() as { id: string }[]).map((r) => r.id));
  } finally {
    db.close();
  }
}

async function start(dir: string, url: string): Promise<RunningLinewatch> {
  const config = writeConfig(dir, {
    site: 'ops',
    line: 'line-1',
    camera: 'cam-1',
    stateDir: join(dir, 'state'),
    model: tinyModel,
    capture: { source: 'replay', replay: { folder: await makeFrames(join(dir, 'frames'), 20), fps: 30, loop: true } },
    enroll: { folder: await makeLabeledImages(join(dir, 'refs')) },
    // Threshold 0: every frame is an anomaly, a steady stream of events.
    knn: { threshold: 0 },
    mqtt: { url },
    http: { enabled: false },
    log: { format: 'json' },
  });
  const daemon = runLinewatch(['run', '--config', config]);
  cleanups.push(() => daemon.stop('SIGKILL'));
  return daemon;
}

/** SIGTERM, and the time to exit: systemd kills the service after TimeoutStopSec (30 s). */
async function terminate(daemon: RunningLinewatch): Promise<{ code: number | null; seconds: number }> {
  const began = Date.now();
  const code = await daemon.stop('SIGTERM');
  return { code, seconds: (Date.now() - began) / 1000 };
}

describe('SIGTERM loses no event (daemon as a child process, real mosquitto)', () => {
  it('with the broker up: frames in flight finish and the outbox is flushed to the broker', async () => {
    const dir = tempDir();
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const sub = await collectMessages(broker.url, topic);
    cleanups.push(() => sub.close());
    const daemon = await start(dir, broker.url);
    await daemon.waitForLog((_, all) => recorded(all).length >= 20);

    const { code, seconds } = await terminate(daemon);
    expect(code, daemon.stderr().slice(-2000)).toBe(0);
    expect(seconds).toBeLessThan(30);
    const ids = recorded(daemon.logs);
    const left = outboxIds(join(dir, 'state'));
    expect(left.size).toBe(0);
    await sub.waitFor(() => ids.every((id) => received(sub).has(id)));
    expect(daemon.logs.find((l) => l.msg === 'stopped')).toMatchObject({ eventsWaiting: 0 });
  });

  it('with the broker gone: every event logged as recorded reached the subscriber or is still in the outbox', async () => {
    const dir = tempDir();
    // Persistent broker and subscriber session: what the broker acknowledged reaches the subscriber even across the broker's stop.
    const broker = await startMosquitto({ persistence: true });
    cleanups.push(() => broker.stop());
    const sub = await collectMessages(broker.url, topic, { persistentClientId: 'ops-shutdown-subscriber' });
    cleanups.push(() => sub.close());
    const daemon = await start(dir, broker.url);
    await sub.waitFor((messages) => messages.length >= 10, 30_000);
    await broker.stop();
    const atBrokerStop = recorded(daemon.logs).length;
    await daemon.waitForLog((_, all) => recorded(all).length >= atBrokerStop + 10);

    const { code, seconds } = await terminate(daemon);
    expect(code, daemon.stderr().slice(-2000)).toBe(0);
    expect(seconds).toBeLessThan(30);
    const ids = recorded(daemon.logs);
    const left = outboxIds(join(dir, 'state'));
    // The events recorded while the broker was away wait for the next start.
    expect(left.size).toBeGreaterThanOrEqual(10);
    expect(daemon.logs.find((l) => l.msg === 'stopped')).toMatchObject({ eventsWaiting: left.size });

    await broker.restart();
    const delivered = ids.filter((id) => !left.has(id));
    expect(delivered.length).toBeGreaterThanOrEqual(10);
    // Every recorded event not in the outbox was acknowledged by the broker: it must arrive.
    await sub.waitFor(() => delivered.every((id) => received(sub).has(id)), 30_000);
  });
});
