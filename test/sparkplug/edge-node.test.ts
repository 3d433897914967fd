import { afterEach, describe, expect, it } from 'vitest';
import { collectMessages, startMosquitto } from '../helpers/mosquitto.js';
import { join } from 'node:path';
import { makeLabeledImages, runLinewatch, tempDir, tinyModel, writeConfig, type LogLine, type RunningLinewatch } from '../helpers/daemon.js';
import { device, group, metric, node, num, sparkplugConfig, startHost, type SparkplugMessage } from './host.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const recordedIds = (logs: LogLine[]) => logs.filter((l) => l.msg === 'anomaly').map((l) => String(l.event));

function track(run: RunningLinewatch): RunningLinewatch {
  cleanups.push(() => run.stop('SIGKILL'));
  return run;
}

const names = (m: SparkplugMessage) => (m.payload.metrics ?? []).map((x) => `${x.name}:${x.type}`).sort();

async function statusOf(run: RunningLinewatch): Promise<{ events: { sparkplug: Record<string, any> }; decisions: { classified: number } }> {
  const url = String((await run.waitForLog((l) => l.msg === 'running')).status);
  return (await fetch(url)).json() as never;
}

describe('Sparkplug B edge node (real daemon, real mosquitto, Tahu decoder)', () => {
  it('births in order, continuous seq, Rebirth, DCMD writes, refused commands, NDEATH on kill -9, bdSeq across restarts, every event id', async () => {
    const dir = tempDir();
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const host = await startHost(broker.url);
    cleanups.push(() => host.close());
    // fps 0: frames as fast as they decode, an event each, so seq wraps within seconds.
    const config = await sparkplugConfig(dir, broker.url, { fps: 0 });
    const first = track(runLinewatch(['run', '--config', config]));

    // NBIRTH, then DBIRTH, then data; seq one more each message, wrapping 255 -> 0.
    await host.waitFor((all) => all.length >= 400, 30_000);
    const session = host.messages.slice(0, 400);
    expect(session[0]!.verb).toBe('NBIRTH');
    expect(session[1]!.verb).toBe('DBIRTH');
    expect(session[1]!.device).toBe(device);
    expect(session.slice(2).every((m) => m.verb === 'DDATA' || m.verb === 'NDATA')).toBe(true);
    const seqs = session.map((m) => num(m.payload.seq));
    expect(seqs[0]).toBe(0);
    expect(seqs.slice(1).every((s, i) => s === (seqs[i]! + 1) % 256)).toBe(true);
    expect(seqs.slice(1)).toContain(0);
    for (const m of session) {
      expect(m.payload.timestamp).toBeDefined();
      expect((m.payload.metrics ?? []).every((x) => x.timestamp !== undefined && x.timestamp !== null)).toBe(true);
    }

    const nbirth = session[0]!;
    expect(metric(nbirth, 'bdSeq')).toMatchObject({ type: 'Int64' });
    expect(num(metric(nbirth, 'bdSeq')!.value)).toBe(0);
    expect(metric(nbirth, 'Node Control/Rebirth')).toMatchObject({ type: 'Boolean', value: false });
    expect(metric(nbirth, 'Model/Name')).toMatchObject({ type: 'String', value: 'tiny-test' });
    expect(num(metric(nbirth, 'References/Total')!.value)).toBe(8);
    expect(num(metric(nbirth, 'References/By Label/scratch')!.value)).toBe(4);
    expect(names(nbirth)).toEqual(
      ['bdSeq:Int64', 'Node Control/Rebirth:Boolean', 'Model/Name:String', 'Model/Version:String', 'Model/Execution Provider:String', 'References/Total:Int64', 'References/By Label/good:Int64', 'References/By Label/scratch:Int64', 'Outbox/Backlog:Int64'].sort(),
    );
    const dbirth = session[1]!;
    expect(names(dbirth)).toEqual(
      [
        'Decisions/Anomalies:Int64', 'Decisions/Good:Int64', 'Decisions/Last Label:String', 'Decisions/Last Score:Double', 'Capture/Frames Per Second:Double',
        'Capture/Dropped Frames:Int64', 'Capture/State:String', 'Classifier/Threshold:Double', 'Classifier/K:Int32', 'Classifier/Unknown Distance:Double',
        'Event/Id:String', 'Event/Label:String', 'Event/Score:Double',
      ].sort(),
    );
    expect(metric(dbirth, 'Event/Id')!.value).toBeNull();
    const events = session.filter((m) => m.verb === 'DDATA' && metric(m, 'Event/Id'));
    // Most DDATA carry an event (every frame is one); how many depends on the machine's speed.
    expect(events.length).toBeGreaterThan(100);
    // The event as the JSON side and the log know it: same id, label and score, stamped with the capture time.
    const logged = first.logs.find((l) => l.msg === 'anomaly' && l.event === metric(events[0]!, 'Event/Id')!.value)!;
    expect(metric(events[0]!, 'Event/Label')!.value).toBe(logged.label);
    expect(metric(events[0]!, 'Event/Score')!.value).toBeCloseTo(Number(logged.score), 3);
    expect(metric(events[0]!, 'Event/Id')!.isHistorical).toBe(false);

    // Malformed and unknown commands: refused, counted, never a crash; decisions go on.
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0x0f, 0x01]);
    await host.publish('spBv1.0/plant/NCMD/line-1', garbage);
    await host.publish(`spBv1.0/plant/DCMD/line-1/${device}`, garbage);
    await host.command('NCMD', [{ name: 'Node Control/Reboot', type: 'Boolean', value: true }]);
    await host.command('NCMD', [{ name: 'Node Control/Rebirth', type: 'String', value: 'true' }]);
    await host.command('DCMD', [{ name: 'Classifier/Threshold', type: 'String', value: '0.5' }]);
    await host.command('DCMD', [{ name: 'Decisions/Good', type: 'Int64', value: 0 }]);
    await host.command('DCMD', [{ name: 'Classifier/K', type: 'Double', value: 2.5 }]);
    await host.command('DCMD', [{ name: 'Classifier/Threshold', type: 'Double', value: 7 }]);
    await host.command('DCMD', [{ name: 'Classifier/Threshold', type: 'Double', value: 0.5 }], 'cam-9');
    const before = recordedIds(first.logs).length;
    await first.waitForLog((_, all) => recordedIds(all).length >= before + 50);
    const status = await statusOf(first);
    expect(status.events.sparkplug).toMatchObject({ connected: true, born: true, bdSeq: 0, commands: { handled: 0, refused: 9 } });
    expect(first.logs.filter((l) => l.component.endsWith('sparkplug') && l.level === 'warn').length).toBeLessThanOrEqual(2);

    // Rebirth: NBIRTH (same bdSeq, seq 0) and DBIRTH with every metric again.
    const births = host.messages.length;
    await host.command('NCMD', [{ name: 'Node Control/Rebirth', type: 'Boolean', value: true }]);
    await host.waitFor((all) => all.slice(births).some((m) => m.verb === 'DBIRTH'));
    const reborn = host.messages.slice(births).filter((m) => m.verb === 'NBIRTH' || m.verb === 'DBIRTH');
    expect(reborn.map((m) => [m.verb, num(m.payload.seq)])).toEqual([['NBIRTH', 0], ['DBIRTH', 1]]);
    expect(num(metric(reborn[0]!, 'bdSeq')!.value)).toBe(0);
    expect(names(reborn[0]!)).toEqual(names(nbirth));
    expect(names(reborn[1]!)).toEqual(names(dbirth));

    // kill -9 while events flow: the broker sends the will, an NDEATH with the NBIRTH's bdSeq.
    first.child.kill('SIGKILL');
    await first.exited;
    await host.waitFor((all) => all.some((m) => m.verb === 'NDEATH'), 10_000);
    const death = host.messages.find((m) => m.verb === 'NDEATH')!;
    expect(num(metric(death, 'bdSeq')!.value)).toBe(0);
    expect(death.payload.seq == null).toBe(true);

    // The restart connects with the next bdSeq (persisted) and sends again, as historical, every
    // event the first run could not be sure of: each id the first run logged arrives at least once.
    const restarted = host.messages.length;
    const second = track(runLinewatch(['run', '--config', config]));
    await host.waitFor((all) => all.slice(restarted).some((m) => m.verb === 'DBIRTH'));
    const secondBirth = host.messages.slice(restarted).find((m) => m.verb === 'NBIRTH')!;
    expect(num(metric(secondBirth, 'bdSeq')!.value)).toBe(1);
    const expected = recordedIds(first.logs);
    await host.waitFor(() => expected.every((id) => host.events.has(id)), 20_000);
    const fromFirstRun = new Set(expected);
    const resent = host.messages.slice(restarted).filter((m) => m.verb === 'DDATA' && fromFirstRun.has(String(metric(m, 'Event/Id')?.value)));
    expect(resent.length).toBeGreaterThan(0);
    expect(resent.every((m) => metric(m, 'Event/Id')!.isHistorical === true)).toBe(true);

    // A threshold write goes through the control API: the next DDATA shows it and good frames stop being anomalies.
    const written = host.messages.length;
    await host.command('DCMD', [{ name: 'Classifier/Threshold', type: 'Double', value: 0.5 }]);
    await host.waitFor((all) => all.slice(written).some((m) => metric(m, 'Classifier/Threshold')?.value === 0.5));
    await second.waitForLog((l) => l.msg === 'command' && l.via === 'sparkplug');
    const good = (all: SparkplugMessage[]) => Math.max(0, ...all.slice(restarted).filter((m) => metric(m, 'Decisions/Good')).map((m) => num(metric(m, 'Decisions/Good')!.value)));
    const goodAtWrite = good(host.messages);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const anomaliesAfter = recordedIds(second.logs).length;
    await host.waitFor((all) => good(all) > goodAtWrite + 100);
    // Frames in flight when the write landed may still be decided with the old threshold, no more.
    expect(recordedIds(second.logs).length).toBe(anomaliesAfter);

    expect(await second.stop('SIGTERM')).toBe(0);
    // A clean stop says goodbye with an NDEATH of the same bdSeq.
    await host.waitFor((all) => all.slice(restarted).some((m) => m.verb === 'NDEATH'));
    expect(num(metric(host.messages.slice(restarted).find((m) => m.verb === 'NDEATH')!, 'bdSeq')!.value)).toBe(1);
  });
});

describe('profile both', () => {
  it('sends every event as JSON and as Sparkplug DDATA with the same id, on two connections', async () => {
    const dir = tempDir();
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const host = await startHost(broker.url);
    cleanups.push(() => host.close());
    const json = await collectMessages(broker.url, `linewatch/site-a/${node}/${device}/events`);
    cleanups.push(() => json.close());
    const daemon = track(runLinewatch(['run', '--config', await sparkplugConfig(dir, broker.url, { profile: 'both' })]));
    await json.waitFor((msgs) => msgs.length >= 10, 20_000);
    const ids = json.messages.slice(0, 10).map((m) => (JSON.parse(m.payload) as { id: string }).id);
    await host.waitFor(() => ids.every((id) => host.events.has(id)));
    const status = await statusOf(daemon);
    expect(status.events.sparkplug).toMatchObject({ connected: true, born: true });
    expect((status.events as unknown as { mqtt: { connected: boolean } }).mqtt.connected).toBe(true);
    expect(await daemon.stop('SIGTERM')).toBe(0);
  });
});

describe('several cameras', () => {
  it('makes each camera a device: a DBIRTH each, its own decisions, its events as its DDATA, DCMD to any of them, and a reload that removes one', async () => {
    const dir = tempDir();
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const host = await startHost(broker.url);
    cleanups.push(() => host.close());
    const json = await collectMessages(broker.url, `linewatch/site-a/${node}/+/events`);
    cleanups.push(() => json.close());
    const replay = async (name: string) => ({ source: 'replay', replay: { folder: join(await makeLabeledImages(join(dir, name), 3), 'good'), fps: 20, loop: true } });
    const settings = {
      site: 'site-a',
      line: node,
      cameras: [
        { camera: 'cam-a', capture: await replay('frames-a') },
        { camera: 'cam-b', capture: await replay('frames-b') },
      ],
      stateDir: join(dir, 'state'),
      model: tinyModel,
      enroll: { folder: await makeLabeledImages(join(dir, 'refs')) },
      knn: { threshold: 0 },
      mqtt: { url: broker.url, profile: 'both', keepaliveS: 1 },
      sparkplug: { groupId: group, reportIntervalMs: 100 },
      http: { enabled: true, port: 0 },
      log: { format: 'json' },
    };
    const daemon = track(runLinewatch(['run', '--config', writeConfig(dir, settings)]));

    // NBIRTH, then a DBIRTH per camera in the configuration's order, seq continuing.
    await host.waitFor((all) => all.filter((m) => m.verb === 'DBIRTH').length >= 2);
    expect(host.messages.slice(0, 3).map((m) => [m.verb, m.device, num(m.payload.seq)])).toEqual([['NBIRTH', null, 0], ['DBIRTH', 'cam-a', 1], ['DBIRTH', 'cam-b', 2]]);

    // Each camera's JSON events arrive as DDATA of its own device, with the same ids.
    const byCamera = (camera: string) => json.messages.filter((m) => m.topic.endsWith(`/${camera}/events`)).map((m) => (JSON.parse(m.payload) as { id: string }).id);
    await json.waitFor(() => byCamera('cam-a').length >= 5 && byCamera('cam-b').length >= 5, 20_000);
    const ids = { 'cam-a': byCamera('cam-a').slice(0, 5), 'cam-b': byCamera('cam-b').slice(0, 5) };
    await host.waitFor(() => [...ids['cam-a'], ...ids['cam-b']].every((id) => host.events.has(id)));
    const deviceOf = (id: string) => host.messages.find((m) => m.verb === 'DDATA' && metric(m, 'Event/Id')?.value === id)!.device;
    expect(ids['cam-a'].map(deviceOf)).toEqual(Array(5).fill('cam-a'));
    expect(ids['cam-b'].map(deviceOf)).toEqual(Array(5).fill('cam-b'));

    // Each device counts its own camera's decisions: their sum is the line's.
    const lastCount = (camera: string) => Math.max(0, ...host.messages.filter((m) => m.device === camera && metric(m, 'Decisions/Anomalies')).map((m) => num(metric(m, 'Decisions/Anomalies')!.value)));
    await host.waitFor(() => lastCount('cam-a') > 10 && lastCount('cam-b') > 10);
    const status = (await (await fetch(String((await daemon.waitForLog((l) => l.msg === 'running')).status))).json()) as {
      cameras: { camera: string; decisions: { anomalies: number } }[];
      events: { sparkplug: Record<string, unknown> };
    };
    for (const camera of status.cameras) expect(lastCount(camera.camera)).toBeLessThanOrEqual(camera.decisions.anomalies);
    expect(status.cameras.map((c) => c.decisions.anomalies).every((n) => n < lastCount('cam-a') + lastCount('cam-b'))).toBe(true);
    expect(status.events.sparkplug).toMatchObject({ devices: ['cam-a', 'cam-b'] });

    // A write to either device sets the line's classifier: both report it. A device it does not have is refused.
    const written = host.messages.length;
    await host.command('DCMD', [{ name: 'Classifier/Threshold', type: 'Double', value: 0.25 }], 'cam-b');
    await host.command('DCMD', [{ name: 'Classifier/Threshold', type: 'Double', value: 0.5 }], 'cam-9');
    await host.waitFor((all) => ['cam-a', 'cam-b'].every((d) => all.slice(written).some((m) => m.device === d && metric(m, 'Classifier/Threshold')?.value === 0.25)));
    await daemon.waitForLog((l) => l.msg === 'DCMD refused: this edge node has no device "cam-9"');

    // A reload that removes cam-b ends the session (NDEATH) and births what is left, cam-b no more.
    const reloaded = host.messages.length;
    writeConfig(dir, { ...settings, cameras: settings.cameras.slice(0, 1) });
    daemon.child.kill('SIGHUP');
    await daemon.waitForLog((l) => l.msg === 'configuration reloaded');
    await host.waitFor((all) => all.slice(reloaded).some((m) => m.verb === 'DBIRTH'));
    const after = host.messages.slice(reloaded).filter((m) => m.verb !== 'DDATA' && m.verb !== 'NDATA');
    expect(after.slice(0, 3).map((m) => [m.verb, m.device])).toEqual([['NDEATH', null], ['NBIRTH', null], ['DBIRTH', 'cam-a']]);
    // cam-a goes on (its frames are good now, at threshold 0.25); cam-b is heard of no more.
    const births = host.messages.length;
    await host.waitFor((all) => all.slice(births).filter((m) => m.device === 'cam-a' && metric(m, 'Decisions/Good')).length >= 3);
    // The old session may still have sent cam-b's data before its NDEATH; after the new NBIRTH, none.
    const reborn = host.messages.findIndex((m, i) => i >= reloaded && m.verb === 'NBIRTH');
    expect(host.messages.slice(reborn).some((m) => m.device === 'cam-b')).toBe(false);
    expect(await daemon.stop('SIGTERM')).toBe(0);
  });
});
