import { afterEach, describe, expect, it } from 'vitest';
import { startMosquitto } from '../helpers/mosquitto.js';
import { runLinewatch, tempDir, type LogLine, type RunningLinewatch } from '../helpers/daemon.js';
import { metric, num, sparkplugConfig, startHost, type SparkplugMessage } from './host.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const recordedIds = (logs: LogLine[]) => logs.filter((l) => l.msg === 'anomaly').map((l) => String(l.event));
const births = (messages: SparkplugMessage[]) => messages.filter((m) => m.verb === 'NBIRTH');

describe('Sparkplug store and forward', () => {
  it('holds data until the primary host is online, across its offline period and a broker outage; every event id arrives, historical where it waited', async () => {
    const dir = tempDir();
    // Persistence keeps the host's retained STATE and its subscription across the broker restart.
    const broker = await startMosquitto({ persistence: true });
    cleanups.push(() => broker.stop());
    const host = await startHost(broker.url);
    cleanups.push(() => host.close());
    /**
     * Of the ids logged while the host or broker was away, those first sent after message `index`.
     * An event logged just before reaches the test's log reader after the broker's message may
     * still have gone out live: the two pipes race.
     */
    const sentAfter = (ids: string[], index: number) => ids.filter((id) => host.events.get(id)!.index > index);
    const config = await sparkplugConfig(dir, broker.url, { primaryHostId: 'scada' });
    const daemon: RunningLinewatch = runLinewatch(['run', '--config', config]);
    cleanups.push(() => daemon.stop('SIGKILL'));

    // No STATE yet: connected, deciding, storing events, and silent.
    await daemon.waitForLog((l) => l.msg === 'connected to the MQTT broker');
    await daemon.waitForLog((_, all) => recordedIds(all).length >= 10);
    expect(host.messages).toEqual([]);
    const beforeHost = recordedIds(daemon.logs);

    await host.state(true);
    await host.waitFor((all) => all.some((m) => m.verb === 'DBIRTH'));
    expect(host.messages.slice(0, 2).map((m) => m.verb)).toEqual(['NBIRTH', 'DBIRTH']);
    await host.waitFor(() => beforeHost.every((id) => host.events.has(id)));
    expect(beforeHost.every((id) => host.events.get(id)!.historical)).toBe(true);
    // Events decided once the host is online are live.
    const live = recordedIds(daemon.logs).length;
    await daemon.waitForLog((_, all) => recordedIds(all).length >= live + 5);
    const liveIds = recordedIds(daemon.logs).slice(live + 1, live + 5);
    await host.waitFor(() => liveIds.every((id) => host.events.has(id)));
    expect(liveIds.map((id) => host.events.get(id)!.historical)).toEqual([false, false, false, false]);

    // The primary host goes offline: an NDEATH (same bdSeq, same connection), then nothing leaves the outbox.
    await host.state(false);
    await host.waitFor((all) => all.some((m) => m.verb === 'NDEATH'));
    const death = host.messages.length;
    expect(num(metric(host.messages[death - 1]!, 'bdSeq')!.value)).toBe(0);
    const offlineFrom = recordedIds(daemon.logs).length;
    await daemon.waitForLog((_, all) => recordedIds(all).length >= offlineFrom + 15);
    const offlineTo = recordedIds(daemon.logs).length;
    expect(host.messages.length).toBe(death);
    await host.state(true);
    await host.waitFor((all) => births(all).length === 2 && all.at(-1)!.verb !== 'NBIRTH');
    expect(host.messages[death]!.verb).toBe('NBIRTH');
    expect(num(metric(host.messages[death]!, 'bdSeq')!.value)).toBe(0);
    const held = recordedIds(daemon.logs).slice(offlineFrom, offlineTo);
    await host.waitFor(() => held.every((id) => host.events.has(id)));
    expect(sentAfter(held, death).length).toBeGreaterThanOrEqual(10);
    expect(sentAfter(held, death).filter((id) => !host.events.get(id)!.historical)).toEqual([]);

    // A broker outage: the next connection has the next bdSeq and sends what waited as historical.
    await broker.stop();
    const outageFrom = recordedIds(daemon.logs).length;
    await daemon.waitForLog((_, all) => recordedIds(all).length >= outageFrom + 15);
    const outageTo = recordedIds(daemon.logs).length;
    await broker.restart();
    await host.waitFor((all) => births(all).length === 3, 20_000);
    const rebirth = host.messages.indexOf(births(host.messages)[2]!);
    // Every CONNECT takes the next bdSeq, also those refused while the broker was still down.
    expect(num(metric(host.messages[rebirth]!, 'bdSeq')!.value)).toBeGreaterThan(0);
    const waited = recordedIds(daemon.logs).slice(outageFrom, outageTo);
    await host.waitFor(() => waited.every((id) => host.events.has(id)), 20_000);
    expect(sentAfter(waited, rebirth).length).toBeGreaterThanOrEqual(10);
    expect(sentAfter(waited, rebirth).filter((id) => !host.events.get(id)!.historical)).toEqual([]);

    // At least once, none missing: every event the daemon logged reached the host.
    expect(await daemon.stop('SIGTERM')).toBe(0);
    const all = recordedIds(daemon.logs);
    await host.waitFor(() => all.every((id) => host.events.has(id)));
    // The stages above waited for 10 + 5 + 15 + 15 events; how many more came in their waits is timing.
    expect(all.length).toBeGreaterThanOrEqual(45);
    // Never data without a birth: every DATA follows an NBIRTH and a DBIRTH of a session no NDEATH
    // of the same bdSeq has ended (a host ignores a late NDEATH of an older bdSeq).
    let born = 0;
    let bdSeq = -1;
    for (const m of host.messages) {
      if (m.verb === 'NBIRTH') [born, bdSeq] = [1, num(metric(m, 'bdSeq')!.value)];
      else if (m.verb === 'DBIRTH') born = born === 1 ? 2 : 0;
      else if (m.verb === 'NDEATH') born = num(metric(m, 'bdSeq')!.value) === bdSeq ? 0 : born;
      else expect(born).toBe(2);
    }
  });
});
