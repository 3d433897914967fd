import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { makeLabeledImages, repoRoot, runLinewatch, tempDir, tinyModel, writeConfig } from '../helpers/daemon.js';
import { MqttSession } from '../../dist/mqtt/index.js';
import { collectMessages, startMosquitto } from '../helpers/mosquitto.js';
import { makeFrames, until } from './helpers.js';

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

const cam1 = 'linewatch-plant-1-line-3-cam-1';
const cam2 = 'linewatch-plant-1-line-3-cam-2';

/**
 * The broker of deploy/mosquitto with its certificates, the SCADA collecting linewatch/#, and the
 * daemon of plant-1/line-3/cam-1, as config/example.yml sets it up: mqtts with CA, certificate and key files.
 */
async function startLine(extra: Record<string, unknown> = {}) {
  const dir = tempDir();
  makeCerts(dir, 'ca');
  makeCerts(dir, 'broker', '127.0.0.1');
  for (const name of ['scada', 'technician', cam1, cam2]) makeCerts(dir, 'client', name);
  const broker = await startMosquitto({ tls: true, listenerConfig: listenerConfig(dir) });
  cleanups.push(() => broker.stop());
  const scada = await collectMessages(broker.url, 'linewatch/#', { tls: pki(dir, 'scada') });
  cleanups.push(() => scada.close());
  const device = pki(dir, cam1);
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
    ...extra,
  });
  const daemon = runLinewatch(['run', '--config', config]);
  cleanups.push(() => daemon.stop('SIGKILL'));
  await scada.waitFor((m) => m.filter((x) => x.topic === 'linewatch/plant-1/line-3/cam-1/events').length >= 3, 30_000);
  return { dir, broker, scada, daemon };
}

/** An MQTT 5 client with `name`'s certificate, connected. */
async function connectAs(url: string, dir: string, name: string): Promise<MqttClient> {
  const files = pki(dir, name);
  const client = connect(url, { protocolVersion: 5, ca: readFileSync(files.ca), cert: readFileSync(files.cert), key: readFileSync(files.key), reconnectPeriod: 0 });
  cleanups.push(() => client.endAsync(true));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

/** The PUBACK reason code of a QoS 1 publish: 0 accepted, 135 not authorized. */
function publishCode(client: MqttClient, topic: string, payload: string, properties: Record<string, unknown> = {}): Promise<number> {
  return client.publishAsync(topic, payload, { qos: 1, properties }).then(
    (packet) => (packet as { reasonCode?: number } | undefined)?.reasonCode ?? 0,
    (err: { code?: number }) => err.code ?? -1,
  );
}

describe('TLS broker with client certificates and a per-device ACL (deploy/mosquitto, real mosquitto)', () => {
  it('carries the daemon\'s events over mqtts to the SCADA user, and refuses a device writing another camera\'s topics', async () => {
    const { dir, broker, scada, daemon } = await startLine();
    expect(broker.url).toMatch(/^mqtts:/);
    expect(scada.messages.find((m) => m.topic === 'linewatch/plant-1/line-3/cam-1/available')?.payload).toBe('online');
    expect(await daemon.stop()).toBe(0);

    // cam-2's certificate is valid, but the ACL lets it write only under its own root: the broker
    // answers the forged cam-1 event with "not authorized" (MQTT 5 reason code 135).
    const intruder = await connectAs(broker.url, dir, cam2);
    expect(await publishCode(intruder, 'linewatch/plant-1/line-3/cam-1/events', '{"forged":true}')).toBe(135);
    expect(await publishCode(intruder, 'linewatch/plant-1/line-3/cam-2/events', '{"own":true}')).toBe(0);
    await scada.waitFor((m) => m.some((x) => x.payload === '{"own":true}'));
    expect(scada.messages.some((m) => m.payload.includes('forged'))).toBe(false);

    // No certificate, no connection.
    const anonymous = connect(broker.url, { protocolVersion: 5, ca: readFileSync(pki(dir, cam2).ca), reconnectPeriod: 0, connectTimeout: 5_000 });
    cleanups.push(() => anonymous.endAsync(true));
    const failure = await new Promise<string>((resolve) => {
      anonymous.once('connect', () => resolve('connected'));
      anonymous.once('error', (err) => resolve(err.message));
      anonymous.once('close', () => resolve('closed'));
    });
    // The broker asks for a certificate and ends the handshake with TLS alert 116, "certificate required".
    expect(failure).toMatch(/alert certificate required|alert number 116/);
  });

  it('lets a device share fleet references only under its own id (the pattern ACL), for the devices of its site to read', async () => {
    const { dir, broker, daemon } = await startLine({ sync: { enabled: true } });
    // cam-2 reads the site's fleet: the 8 references cam-1 enrolled arrive under cam-1's id.
    const peer = await collectMessages(broker.url, 'linewatch/plant-1/fleet/#', { tls: pki(dir, cam2) });
    cleanups.push(() => peer.close());
    const own = `linewatch/plant-1/fleet/tiny-test@1/${cam1}/ref/`;
    await peer.waitFor((m) => m.filter((x) => x.topic.startsWith(own) && x.retain).length === 8, 20_000);

    // cam-2's identity cannot publish (or delete) a reference as cam-1, nor share under another site;
    // under its own id it may. The technician and the SCADA are no devices: they may not share at all.
    const intruder = await connectAs(broker.url, dir, cam2);
    expect(await publishCode(intruder, `${own}1`, '')).toBe(135);
    expect(await publishCode(intruder, `${own}999`, '{"forged":true}')).toBe(135);
    expect(await publishCode(intruder, `linewatch/plant-2/fleet/tiny-test@1/${cam2}/ref/1`, '{}')).toBe(135);
    expect(await publishCode(intruder, `linewatch/plant-1/fleet/tiny-test@1/${cam2}/ref/1`, '')).toBe(0);
    for (const name of ['technician', 'scada']) {
      const client = await connectAs(broker.url, dir, name);
      expect(await publishCode(client, `linewatch/plant-1/fleet/tiny-test@1/${name}/ref/1`, '{}')).toBe(135);
    }
    expect(daemon.logs.filter((l) => String(l.msg).includes('refused'))).toEqual([]);
    expect(await daemon.stop()).toBe(0);
  });

  it('refuses a broker whose certificate comes from another CA, and says it is TLS', async () => {
    const dir = tempDir();
    makeCerts(dir, 'ca');
    makeCerts(dir, 'broker', '127.0.0.1');
    makeCerts(dir, 'client', cam1);
    const broker = await startMosquitto({ tls: true, listenerConfig: listenerConfig(dir) });
    cleanups.push(() => broker.stop());
    // The device trusts only its own plant's CA, which did not sign this broker.
    const other = tempDir();
    makeCerts(other, 'ca');
    const device = pki(dir, cam1);
    const session = new MqttSession({ url: broker.url, clientId: cam1, caFile: join(other, 'pki/ca.crt'), certFile: device.cert, keyFile: device.key, reconnectMinMs: 50, reconnectMaxMs: 200 });
    cleanups.push(() => session.stop());
    session.start();
    await until(() => session.status().lastError !== null, 'the session reports why it cannot connect', 10_000);
    expect(session.status()).toMatchObject({
      connected: false,
      lastError: `TLS with the MQTT broker at ${broker.url} failed (SELF_SIGNED_CERT_IN_CHAIN): check caFile, certFile and keyFile`,
    });
  });

  it('lets the technician command a device and read the reply; another device\'s identity cannot command it', async () => {
    const { dir, broker, scada, daemon } = await startLine();
    const command = 'linewatch/plant-1/line-3/cam-1/cmd/status';
    // Replies come back under linewatch-replies/<user>/, which the ACL lets only that user read.
    const replies = (client: MqttClient) => {
      const got: { topic: string; correlation: string; reply: { ok: boolean; result?: { camera?: string } } }[] = [];
      client.on('message', (topic, payload, packet) =>
        got.push({ topic, correlation: packet.properties?.correlationData?.toString() ?? '', reply: JSON.parse(payload.toString()) as never }),
      );
      return got;
    };

    const technician = await connectAs(broker.url, dir, 'technician');
    const answers = replies(technician);
    await technician.subscribeAsync('linewatch-replies/technician/#', { qos: 1 });
    expect(await publishCode(technician, command, '{}', { responseTopic: 'linewatch-replies/technician/laptop', correlationData: Buffer.from('ask-1') })).toBe(0);
    await until(() => answers.length > 0, 'the technician got a reply', 10_000);
    expect(answers).toEqual([{ topic: 'linewatch-replies/technician/laptop', correlation: 'ask-1', reply: expect.objectContaining({ ok: true, result: expect.objectContaining({ camera: 'cam-1' }) }) }]);
    // It commands; it cannot pose as the device.
    expect(await publishCode(technician, 'linewatch/plant-1/line-3/cam-1/events', '{"forged":true}')).toBe(135);

    // The same command from cam-2's identity: the broker refuses it (PUBACK 135) and the device never
    // sees it, so no reply comes to cam-2's own reply topic (which it may read).
    const intruder = await connectAs(broker.url, dir, cam2);
    const intruderAnswers = replies(intruder);
    await intruder.subscribeAsync(`linewatch-replies/${cam2}/#`, { qos: 1 });
    expect(await publishCode(intruder, command, '{}', { responseTopic: `linewatch-replies/${cam2}/x`, correlationData: Buffer.from('ask-2') })).toBe(135);
    // It cannot listen in on the technician's replies either: the broker sends it nothing from there.
    await intruder.subscribeAsync('linewatch-replies/technician/#', { qos: 1 });
    expect(await publishCode(technician, command, '{}', { responseTopic: 'linewatch-replies/technician/laptop', correlationData: Buffer.from('ask-3') })).toBe(0);
    await until(() => answers.length > 1, 'the technician got its second reply', 10_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(intruderAnswers).toEqual([]);
    expect(answers.map((a) => a.correlation)).toEqual(['ask-1', 'ask-3']);

    // The device's subscription to its command topics was granted (no ACL complaint), and the SCADA,
    // reading linewatch/#, sees the commands but none of the replies.
    expect(daemon.logs.filter((l) => String(l.msg).includes('refused the subscription'))).toEqual([]);
    expect(scada.messages.filter((m) => m.topic === command)).toHaveLength(2);
    expect(scada.messages.some((m) => m.payload.includes('"schema":"linewatch/reply/1"'))).toBe(false);
    expect(await daemon.stop()).toBe(0);
  });
});
