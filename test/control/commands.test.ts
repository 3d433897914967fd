import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, startMosquitto, type Mosquitto } from '../helpers/mosquitto.js';
import { repoRoot, runLinewatch, tempDir, writeConfig, type LogLine, type RunningLinewatch } from '../helpers/daemon.js';

const bundle = join(repoRoot, 'models/default-int8');

/** The classifier settings the bundle ships with: what clearing every override returns to. */
function bundleClassifier(): { k: number; threshold: number } {
  return (JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8')) as { classifier: { k: number; threshold: number } }).classifier;
}

const root = 'linewatch/plant/line-1/cam-1/';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function startLine(broker: Mosquitto, stateDir: string): Promise<{ daemon: RunningLinewatch; http: string }> {
  const port = await freePort();
  const config = writeConfig(tempDir(), {
    site: 'plant',
    line: 'line-1',
    camera: 'cam-1',
    stateDir,
    model: bundle,
    capture: { source: 'replay', replay: { folder: join(repoRoot, 'samples/line/frames'), fps: 0, loop: true } },
    enroll: { folder: join(repoRoot, 'samples/line/references') },
    mqtt: { url: broker.url },
    http: { port },
    log: { format: 'json' },
  });
  const daemon = runLinewatch(['run', '--config', config]);
  cleanups.push(() => daemon.stop('SIGKILL'));
  await daemon.waitForLog((l) => l.msg === 'running', 60_000);
  return { daemon, http: `http://127.0.0.1:${port}` };
}

/** A technician's MQTT 5 client: requests on cmd/<name>, replies on its own topic, matched by correlation data. */
async function technician(url: string): Promise<{ call(name: string, params: unknown): Promise<any>; client: MqttClient }> {
  const client = connect(url, { protocolVersion: 5, clientId: `tech-${randomUUID()}` });
  cleanups.push(() => client.endAsync());
  const responseTopic = `replies/${randomUUID()}`;
  await client.subscribeAsync(responseTopic, { qos: 1 });
  const waiting = new Map<string, (reply: unknown) => void>();
  client.on('message', (_topic, payload, packet) => waiting.get(packet.properties?.correlationData?.toString() ?? '')?.(JSON.parse(payload.toString())));
  return {
    client,
    async call(name, params) {
      const id = randomUUID();
      const reply = new Promise<any>((resolve) => waiting.set(id, resolve));
      await client.publishAsync(`${root}cmd/${name}`, JSON.stringify(params), { qos: 1, properties: { responseTopic, correlationData: Buffer.from(id) } });
      return reply;
    },
  };
}

const anomalies = (logs: LogLine[], from = 0) => logs.slice(from).filter((l) => l.msg === 'anomaly');

describe('commands over MQTT 5 take effect on the next frame, without a restart', () => {
  it('label: the next frame identical to a labeled anomaly is decided with that label', async () => {
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const { daemon } = await startLine(broker, join(tempDir(), 'state'));
    const tech = await technician(broker.url);
    // A frame flagged on two passes of the looping replay: its item is what we label.
    const seen = await daemon.waitForLog((l, all) => l.msg === 'anomaly' && anomalies(all).filter((a) => a.frame === l.frame).length >= 2, 60_000);
    const first = anomalies(daemon.logs).find((a) => a.frame === seen.frame)!;
    expect(first.label).not.toBe('chipped');

    const reply = await tech.call('label', { event: first.event, label: 'chipped' });
    expect(reply).toMatchObject({ schema: 'linewatch/reply/1', ok: true, result: { label: 'chipped', event: first.event, replaced: [] } });
    const mark = daemon.logs.length;
    const next = await daemon.waitForLog((l, all) => all.indexOf(l) >= mark && l.msg === 'anomaly' && l.frame === seen.frame, 30_000);
    expect(next.label).toBe('chipped');
    // Its new reference is at distance 0: the score is the top one, below 1 only by the score's 1e-6
    // (docs/architecture.md) against the nearest good reference, about 1e-3 away with the shipped bundle.
    expect(next.score).toBeGreaterThanOrEqual(0.99);

    // Relabeling the same event replaces its reference rather than adding a second one; spaces around a label are dropped.
    const again = await tech.call('label', { event: first.event, label: ' cracked  ' });
    expect(again.result).toMatchObject({ label: 'cracked', replaced: [reply.result.referenceId] });
    const traversal = await tech.call('label', { event: first.event, label: '../../etc' });
    expect(traversal).toMatchObject({ ok: false, error: { code: 'bad_parameters' } });
    expect(traversal.error.message).toContain('label: 1 to 64 letters, digits, spaces, dots, dashes or underscores');
    const unknown = await tech.call('label', { event: randomUUID(), label: 'x' });
    expect(unknown).toMatchObject({ ok: false, error: { code: 'unknown_event' } });
  });

  it('classifier.set persists, wins over the file, shows in status, survives a restart, and a null clears it', async () => {
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const stateDir = join(tempDir(), 'state');
    const line = await startLine(broker, stateDir);
    const tech = await technician(broker.url);
    await line.daemon.waitForLog((_, all) => anomalies(all).length >= 5, 60_000);

    // Threshold 1 with k 5: only an item whose 5 nearest references are all defects is flagged.
    // k 9 and threshold 1 differ from the bundle's own settings, so clearing them shows.
    const set = await tech.call('classifier.set', { threshold: 1, k: 9 });
    expect(set).toMatchObject({ ok: true, result: { settings: { threshold: 1, k: 9 }, overrides: { threshold: 1, k: 9 } } });
    const mark = line.daemon.logs.length;
    await line.daemon.waitForLog((l, all) => all.indexOf(l) >= mark && l.msg === 'anomaly', 30_000);
    expect(anomalies(line.daemon.logs, mark + 5).every((l) => l.score === 1)).toBe(true);
    const bad = await tech.call('classifier.set', { threshold: 'high' });
    expect(bad).toMatchObject({ ok: false, error: { code: 'bad_parameters' } });
    expect(bad.error.message).toMatch(/threshold/);
    expect(await line.daemon.stop()).toBe(0);

    const restarted = await startLine(broker, stateDir);
    const status = await (await fetch(`${restarted.http}/status`)).json();
    expect(status.classifier).toMatchObject({ k: 9, threshold: 1, overrides: { k: 9, threshold: 1 } });
    const tech2 = await technician(broker.url);
    const cleared = await tech2.call('classifier.set', { threshold: null, k: null });
    expect(cleared.result.overrides).toEqual({});
    const { k, threshold } = bundleClassifier();
    expect(cleared.result.settings).toMatchObject({ k, threshold });
  });
});
