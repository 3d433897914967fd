import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { makeLabeledImages, repoRoot, runLinewatch, tempDir, tinyModel, writeConfig } from '../helpers/daemon.js';
import { collectMessages, startMosquitto } from '../helpers/mosquitto.js';
import { makeFrames } from './helpers.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const deploy = join(repoRoot, 'deploy/mosquitto');

/** deploy/mosquitto/linewatch.conf with its /etc paths moved into `dir`; the helper writes the listener line. */
function listenerConfig(dir: string): string[] {
  writeFileSync(join(dir, 'linewatch.acl'), readFileSync(join(deploy, 'linewatch.acl')));
  return readFileSync(join(deploy, 'linewatch.conf'), 'utf8')
    .split('\n')
    .filter((line) => !/^\s*(#|$|listener\b|per_listener_settings\b)/.test(line))
    .map((line) => line.replace('/etc/mosquitto/certs/', `${dir}/pki/`).replace('/etc/mosquitto/', `${dir}/`));
}

function makeCerts(dir: string, ...args: string[]): void {
  execFileSync(join(deploy, 'make-certs.sh'), [join(dir, 'pki'), ...args], { stdio: 'pipe' });
}

const pki = (dir: string, name: string) => ({ ca: join(dir, 'pki/ca.crt'), cert: join(dir, `pki/${name}.crt`), key: join(dir, `pki/${name}.key`) });

describe('TLS broker with client certificates and a per-device ACL (deploy/mosquitto, real mosquitto)', () => {
  it('carries the daemon\'s events over mqtts to the SCADA user, and refuses a device writing another camera\'s topics', async () => {
    const dir = tempDir();
    makeCerts(dir, 'ca');
    makeCerts(dir, 'broker', '127.0.0.1');
    for (const name of ['scada', 'linewatch-plant-1-line-3-cam-1', 'linewatch-plant-1-line-3-cam-2']) makeCerts(dir, 'client', name);
    const broker = await startMosquitto({ tls: true, listenerConfig: listenerConfig(dir) });
    cleanups.push(() => broker.stop());
    expect(broker.url).toMatch(/^mqtts:/);
    const scada = await collectMessages(broker.url, 'linewatch/#', { tls: pki(dir, 'scada') });
    cleanups.push(() => scada.close());

    // The daemon of plant-1/line-3/cam-1, as config/example.yml sets it up: mqtts with CA, certificate and key files.
    const device = pki(dir, 'linewatch-plant-1-line-3-cam-1');
    const config = writeConfig(dir, {
      site: 'plant-1',
      line: 'line-3',
      camera: 'cam-1',
      stateDir: join(dir, 'state'),
      model: tinyModel,
      capture: { source: 'replay', replay: { folder: await makeFrames(join(dir, 'frames'), 6), fps: 20, loop: true } },
      enroll: { folder: await makeLabeledImages(join(dir, 'refs')) },
      knn: { threshold: 0 },
      mqtt: { url: broker.url, caFile: device.ca, certFile: device.cert, keyFile: device.key },
      http: { enabled: false },
      log: { format: 'json' },
    });
    const daemon = runLinewatch(['run', '--config', config]);
    cleanups.push(() => daemon.stop('SIGKILL'));
    await scada.waitFor((m) => m.filter((x) => x.topic === 'linewatch/plant-1/line-3/cam-1/events').length >= 3, 30_000);
    expect(scada.messages.find((m) => m.topic === 'linewatch/plant-1/line-3/cam-1/available')?.payload).toBe('online');
    expect(await daemon.stop()).toBe(0);

    // cam-2's certificate is valid, but the ACL lets it write only under its own root: the broker
    // answers the forged cam-1 event with "not authorized" (MQTT 5 reason code 135).
    const other = pki(dir, 'linewatch-plant-1-line-3-cam-2');
    const intruder = connect(broker.url, { protocolVersion: 5, ca: readFileSync(other.ca), cert: readFileSync(other.cert), key: readFileSync(other.key), reconnectPeriod: 0 });
    cleanups.push(() => intruder.endAsync(true));
    await new Promise<void>((resolve, reject) => {
      intruder.once('connect', () => resolve());
      intruder.once('error', reject);
    });
    const refused = await intruder.publishAsync('linewatch/plant-1/line-3/cam-1/events', '{"forged":true}', { qos: 1 }).then(
      () => null,
      (err: { code?: number }) => err.code,
    );
    expect(refused).toBe(135);
    const own = await intruder.publishAsync('linewatch/plant-1/line-3/cam-2/events', '{"own":true}', { qos: 1 });
    expect(own?.reasonCode ?? 0).toBe(0);
    await scada.waitFor((m) => m.some((x) => x.payload === '{"own":true}'));
    expect(scada.messages.some((m) => m.payload.includes('forged'))).toBe(false);

    // No certificate, no connection.
    const anonymous = connect(broker.url, { protocolVersion: 5, ca: readFileSync(other.ca), reconnectPeriod: 0, connectTimeout: 5_000 });
    cleanups.push(() => anonymous.endAsync(true));
    const failure = await new Promise<string>((resolve) => {
      anonymous.once('connect', () => resolve('connected'));
      anonymous.once('error', (err) => resolve(err.message));
      anonymous.once('close', () => resolve('closed'));
    });
    expect(failure).not.toBe('connected');
  });
});
