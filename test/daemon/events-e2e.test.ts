import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { collectMessages, freePort, startMosquitto, type Collector, type Mosquitto } from '../helpers/mosquitto.js';
import { makeLabeledImages, runCommand, runLinewatch, tempDir, tinyModel, writeConfig, type LogLine, type RunningLinewatch } from '../helpers/daemon.js';

const eventsTopic = 'linewatch/e2e/line-1/cam-1/events';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** Event ids the daemon logged as written to its outbox, in order. */
const recordedIds = (logs: LogLine[]) => logs.filter((l) => l.msg === 'anomaly').map((l) => String(l.event));

/** Ids as the subscriber first saw them (QoS 1 may deliver twice; a consumer de-duplicates on the id). */
function firstArrivals(sub: Collector): string[] {
  const seen = new Set<string>();
  for (const m of sub.messages) seen.add((JSON.parse(m.payload) as { id: string }).id);
  return [...seen];
}

async function daemonConfig(dir: string, url: string, capture: Record<string, unknown>): Promise<string> {
  return writeConfig(dir, {
    site: 'e2e',
    line: 'line-1',
    camera: 'cam-1',
    stateDir: join(dir, 'state'),
    model: tinyModel,
    capture,
    enroll: { folder: await makeLabeledImages(join(dir, 'refs')) },
    // Threshold 0 makes every frame an anomaly: a steady stream of events to count.
    knn: { threshold: 0 },
    mqtt: { url, statsIntervalS: 1 },
    http: { port: 0 },
    log: { format: 'json' },
  });
}

function track(run: RunningLinewatch): RunningLinewatch {
  cleanups.push(() => run.stop('SIGKILL'));
  return run;
}

describe('daemon end to end: camera frames to MQTT events', () => {
  it('delivers every event, in order, across a broker stop and restart mid-run (real gstreamer, real mosquitto)', async () => {
    const dir = tempDir();
    const broker: Mosquitto = await startMosquitto({ persistence: true });
    cleanups.push(() => broker.stop());
    const sub = await collectMessages(broker.url, eventsTopic, { persistentClientId: 'e2e-subscriber' });
    cleanups.push(() => sub.close());
    const config = await daemonConfig(dir, broker.url, { source: 'gstreamer', gstreamer: { preset: 'test', width: 64, height: 48, fps: 15 } });
    const daemon = track(runLinewatch(['run', '--config', config]));

    await sub.waitFor((msgs) => msgs.length >= 15, 30_000);
    await broker.stop();
    const atStop = recordedIds(daemon.logs).length;
    // Frames keep coming while the broker is away: their events must wait in the outbox.
    await daemon.waitForLog((_, all) => recordedIds(all).length >= atStop + 20);
    await broker.restart();
    // The publisher reconnects by itself (backoff) and drains the backlog while frames keep coming.
    await sub.waitFor(() => firstArrivals(sub).length >= atStop + 20, 40_000);
    await daemon.waitForLog((_, all) => recordedIds(all).length >= atStop + 40);
    expect(await daemon.stop('SIGTERM')).toBe(0);

    const expected = recordedIds(daemon.logs);
    await sub.waitFor(() => firstArrivals(sub).length >= expected.length, 20_000);
    expect(firstArrivals(sub)).toEqual(expected);
    expect(daemon.logs.some((l) => l.msg.includes('cannot reach the MQTT broker') || l.msg.includes('lost the connection'))).toBe(true);
    const stopped = daemon.logs.find((l) => l.msg === 'stopped');
    expect(stopped?.eventsWaiting).toBe(0);
  });

  it('keeps events in the outbox while no broker runs and delivers them after a daemon restart', async () => {
    const dir = tempDir();
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    const frames = join(dir, 'frames');
    await makeLabeledImages(frames, 3);
    // Play the 6 frames once (good/ and scratch/ subfolders hold them; replay reads one folder).
    const config = await daemonConfig(dir, url, { source: 'replay', replay: { folder: join(frames, 'scratch'), fps: 0, loop: false } });

    const first = track(runLinewatch(['run', '--config', config]));
    expect(await first.waitForExit()).toBe(0);
    const waiting = recordedIds(first.logs);
    expect(waiting).toHaveLength(3);
    expect(first.logs.find((l) => l.msg === 'stopped')?.eventsWaiting).toBe(3);

    const status = await runCommand(['status', '--config', config, '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ running: false, events: { backlog: 3 } });

    const broker = await startMosquitto({ port });
    cleanups.push(() => broker.stop());
    const sub = await collectMessages(url, eventsTopic);
    cleanups.push(() => sub.close());
    const second = track(runLinewatch(['run', '--config', config]));
    expect(await second.waitForExit()).toBe(0);
    const all = [...waiting, ...recordedIds(second.logs)];
    await sub.waitFor(() => firstArrivals(sub).length >= all.length, 20_000);
    expect(firstArrivals(sub)).toEqual(all);
    expect(second.logs.find((l) => l.msg === 'stopped')?.eventsWaiting).toBe(0);
  });
});
