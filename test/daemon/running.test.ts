import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import YAML from 'yaml';
import { makeLabeledImages, runCommand, runLinewatch, tempDir, tinyModel, writeConfig } from '../helpers/daemon.js';
import { collectMessages, freePort, startMosquitto } from '../helpers/mosquitto.js';
import { baseUrl, get, makeFrames, until } from '../ops/helpers.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const json = async (url: string) => JSON.parse((await get(url)).body) as Record<string, any>;

it('refuses events past mqtt.outboxLimit while the broker is away, then a reload moves to a new broker keeping the outbox, and a source that cannot start is rolled back', async () => {
  const dir = tempDir();
  const frames = await makeFrames(join(dir, 'frames'), 6);
  const away = `mqtt://127.0.0.1:${await freePort()}`;
  const settings = {
    site: 'ops',
    line: 'line-1',
    camera: 'cam-1',
    stateDir: join(dir, 'state'),
    model: tinyModel,
    capture: { source: 'replay', replay: { folder: frames, fps: 20, loop: true } },
    enroll: { folder: await makeLabeledImages(join(dir, 'refs')) },
    // Every frame is an anomaly (score >= 0), so events pile up while no broker takes them.
    knn: { threshold: 0 },
    mqtt: { url: away, outboxLimit: 3, statsIntervalS: 1 },
    // A fixed port, so linewatch status finds the daemon from the same file.
    http: { port: await freePort() },
    log: { format: 'json' },
  };
  const config = writeConfig(dir, settings);
  const daemon = runLinewatch(['run', '--config', config]);
  cleanups.push(() => daemon.stop('SIGKILL'));
  const running = await daemon.waitForLog((l) => l.msg === 'running');
  const url = baseUrl({ status: running['status'] });

  // The refuse path: a log line, the counter, the status problem; the stored events are kept.
  const refused = await daemon.waitForLog((l) => l.msg === 'event refused');
  const limitReason = 'the outbox holds 3 events (mqtt.outboxLimit): new events are refused until the broker takes some';
  expect(refused).toMatchObject({ level: 'error', reason: limitReason });
  await until(async () => /^linewatch_events_refused_total [1-9]\d*$/m.test((await get(`${url}/metrics`)).body), 'linewatch_events_refused_total counts refusals');
  const status = await json(`${url}/status`);
  expect(status.problems).toContain(limitReason);
  expect(status.problems).toContain(`cannot reach the MQTT broker at ${away} (ECONNREFUSED)`);
  expect(status.events).toMatchObject({ backlog: 3 });
  expect(status.events.refused).toBeGreaterThan(0);

  // Refused events fail the health check with the reason; the broker being away alone is only a warning.
  const health = await get(`${url}/healthz`);
  expect(health.status).toBe(503);
  expect(JSON.parse(health.body)).toMatchObject({
    ok: false,
    failing: [`anomaly events are refused: ${limitReason}`],
    warnings: [`cannot reach the MQTT broker at ${away} (ECONNREFUSED)`],
  });

  // linewatch status asks the running daemon.
  const cli = await runCommand(['status', '--config', config]);
  expect(cli.code).toBe(0);
  expect(cli.stdout).toContain(`problem: ${limitReason}`);

  // mqtt.url on SIGHUP: a new connection, and the three events stored before it are delivered.
  const stored = daemon.logs.filter((l) => l.msg === 'anomaly').slice(0, 3).map((l) => l['event']);
  expect(stored).toHaveLength(3);
  const broker = await startMosquitto();
  cleanups.push(() => broker.stop());
  const root = 'linewatch/ops/line-1/cam-1/';
  const events = await collectMessages(broker.url, `${root}events`);
  const stats = await collectMessages(broker.url, `${root}stats`, { qos: 0 });
  cleanups.push(() => events.close(), () => stats.close());
  writeFileSync(config, YAML.stringify({ ...settings, mqtt: { ...settings.mqtt, url: broker.url } }));
  daemon.child.kill('SIGHUP');
  const reloaded = await daemon.waitForLog((l) => l.msg === 'configuration reloaded');
  expect(reloaded['changed']).toEqual(['mqtt.url']);
  await events.waitFor((m) => stored.every((id) => m.some((e) => JSON.parse(e.payload).id === id)), 20_000);
  // The backlog drained, so events are stored again and the health check passes.
  await until(async () => (await get(`${url}/healthz`)).status === 200, '/healthz passing once the broker took the backlog');
  // ...and none is refused while the broker takes each one: delivered rows leave room at once, even under a limit of 3.
  const refusedBefore = (await json(`${url}/status`)).events.refused as number;
  const storedBefore = daemon.logs.filter((l) => l.msg === 'anomaly').length;
  await daemon.waitForLog((_, all) => all.filter((l) => l.msg === 'anomaly').length >= storedBefore + 20);
  expect((await json(`${url}/status`)).events.refused).toBe(refusedBefore);

  // The stats message says what the daemon counted.
  const [message] = await stats.waitFor((m) => m.length > 0 && JSON.parse(m.at(-1)!.payload).outbox.delivered >= 3, 20_000).then((m) => m.slice(-1));
  const body = JSON.parse(message!.payload);
  expect(body).toMatchObject({ schema: 'linewatch/stats/1', model: { name: 'tiny-test' }, problems: expect.any(Array) });
  expect(body.frames.captured).toBeGreaterThan(0);
  expect(body.decisions.classified).toBeGreaterThan(0);
  expect(body.decisions.anomalies).toBe(body.decisions.classified);
  expect(body.decisions.good).toBe(0);

  // capture.* on SIGHUP, with a folder that does not exist: the old source comes back.
  writeFileSync(config, YAML.stringify({ ...settings, mqtt: { ...settings.mqtt, url: broker.url }, capture: { ...settings.capture, replay: { ...settings.capture.replay, folder: join(dir, 'missing') } } }));
  daemon.child.kill('SIGHUP');
  const failed = await daemon.waitForLog((l) => l.msg === 'new configuration not fully applied');
  expect(String(failed['error'])).toContain(join(dir, 'missing'));
  const decided = (await json(`${url}/status`)).decisions.classified as number;
  await until(async () => (await json(`${url}/status`)).decisions.classified > decided + 5, 'frames decided again from the old source');
  expect((await json(`${url}/status`)).capture.state).toBe('running');
  expect(await daemon.stop()).toBe(0);
});

