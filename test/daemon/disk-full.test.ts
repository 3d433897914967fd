import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { anomalyStreamConfig, runLinewatch, tempDir, type LogLine } from '../helpers/daemon.js';
import { collectMessages, startMosquitto, type Collector } from '../helpers/mosquitto.js';
import { canMountTmpfs, MiB, mountTmpfs } from '../helpers/tmpfs.js';
import { baseUrl, get, makeFrames, until } from '../ops/helpers.js';

const root = 'linewatch/disk/line-1/cam-1/';
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const json = async (url: string) => JSON.parse((await get(url)).body) as Record<string, any>;
/** Event ids the daemon logged as stored in its outbox, in order. */
const storedIds = (logs: LogLine[]) => logs.filter((l) => l.msg === 'anomaly').map((l) => String(l['event']));
/** Ids in the order the subscriber first saw them (QoS 1 may repeat one). */
const arrivedIds = (sub: Collector) => [...new Set(sub.messages.map((m) => (JSON.parse(m.payload) as { id: string }).id))];

describe.skipIf(!canMountTmpfs)('disk full (a real 64 MiB tmpfs as the state directory; needs root)', () => {
  it('refuses events while the disk is full and the broker away, fails /healthz meanwhile, then drains the backlog to zero and stores events again, losing none', async () => {
    const disk = mountTmpfs(64 * MiB);
    cleanups.push(() => disk.unmount());
    const dir = tempDir();
    const broker = await startMosquitto({ persistence: true });
    cleanups.push(() => broker.stop());
    // A subscriber with a broker session: what is published while it is away waits for it.
    const sub = await collectMessages(broker.url, `${root}events`, { persistentClientId: 'disk-full-subscriber' });
    cleanups.push(() => sub.close());
    await broker.stop();

    // Every frame is an anomaly: a steady stream of events and images filling the disk.
    const config = await anomalyStreamConfig(dir, {
      site: 'disk',
      frames: await makeFrames(join(dir, 'frames'), 6),
      fps: 100,
      mqtt: { url: broker.url, statsIntervalS: 1 },
      stateDir: join(disk.path, 'state'),
    });
    const daemon = runLinewatch(['run', '--config', config]);
    cleanups.push(() => daemon.stop('SIGKILL'));
    const url = baseUrl(await daemon.waitForLog((l) => l.msg === 'running'));
    expect(existsSync(join(disk.path, 'state', 'disk-reserve'))).toBe(true);

    // Something else takes the disk but 8 MiB; the events waiting for the broker take the rest.
    writeFileSync(join(disk.path, 'other'), Buffer.alloc(disk.free() - 8 * MiB, 1));
    // How soon 8 MiB fills depends on the machine's speed: a loaded one decides fewer frames a second.
    const refused = await daemon.waitForLog((l) => l.msg === 'event refused', 120_000);
    expect(String(refused['reason'])).toMatch(/^the disk holding the event outbox is full/);
    const health = await get(`${url}/healthz`);
    expect(health.status).toBe(503);
    expect(JSON.parse(health.body).failing).toEqual([`anomaly events are refused: ${String(refused['reason'])}`]);
    const waiting = (await json(`${url}/status`)).events.backlog as number;
    expect(waiting).toBeGreaterThan(100);

    // The broker comes back on the still-full disk: the delivered rows are deleted, the backlog drains.
    await broker.restart();
    const back = Date.now();
    await until(async () => (await json(`${url}/status`)).events.backlog === 0, 'the backlog drained to zero', 30_000);
    console.info(`disk full: ${waiting} events waiting when refused; broker back, backlog zero ${Date.now() - back} ms later`);
    // New events are stored again, in the room the delivered ones left, and health passes.
    const afterDrain = storedIds(daemon.logs).length;
    await daemon.waitForLog((_, all) => storedIds(all).length >= afterDrain + 50);
    await until(async () => (await get(`${url}/healthz`)).status === 200, '/healthz passing once events are stored again');
    expect(disk.free()).toBeLessThan(16 * MiB);

    expect(await daemon.stop()).toBe(0);
    const stored = storedIds(daemon.logs);
    await sub.waitFor(() => arrivedIds(sub).length >= stored.length, 30_000);
    expect(arrivedIds(sub)).toEqual(stored);
    expect(daemon.logs.filter((l) => l.msg === 'could not delete delivered events from the outbox')).toEqual([]);
    expect(daemon.logs.find((l) => l.msg === 'stopped')?.['eventsWaiting']).toBe(0);
  }, 300_000);
});
