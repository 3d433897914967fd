import { describe, expect, it } from 'vitest';
import { configSchema, type Config } from '../../dist/config/index.js';
import { isLiveKey, planReload } from '../../dist/daemon/reload.js';

// What SIGHUP (and the `reload` command) applies, per docs/configuration.md ("Reloading").
const base: Config = configSchema.parse({ site: 'plant', line: 'l1', camera: 'cam1' });

/** The base configuration with `patch` written over it, one leaf at a time. */
function with_(patch: Record<string, unknown>): Config {
  const next = structuredClone(base) as unknown as Record<string, unknown>;
  for (const [path, value] of Object.entries(patch)) {
    const keys = path.split('.');
    const parent = keys.slice(0, -1).reduce((obj, key) => obj[key] as Record<string, unknown>, next);
    parent[keys.at(-1)!] = value;
  }
  return configSchema.parse(next);
}

const nothing = { classifier: false, source: false, publisher: false, log: false };

describe('planReload', () => {
  it('changes nothing when nothing changed', () => {
    expect(planReload(base, base, with_({}))).toEqual({ changed: [], needRestart: [], ...nothing });
  });

  it.each([
    ['knn.k', 9, { classifier: true }],
    ['knn.threshold', 0.7, { classifier: true }],
    ['knn.unknownDistance', 0.3, { classifier: true }],
    ['knn.goodLabel', 'ok', { classifier: true }],
    // The camera's names travel with its frames (events, images) and name the device's topics.
    ['site', 'plant2', { publisher: true, source: true }],
    ['line', 'l2', { publisher: true, source: true }],
    ['camera', 'cam2', { publisher: true, source: true }],
    ['cameras', [{ camera: 'top' }, { camera: 'side' }], { publisher: true, source: true }],
    ['preprocess.roi', { x: 1, y: 2, width: 30, height: 40 }, { source: true }],
    ['mqtt.url', 'mqtt://broker-2:1883', { publisher: true }],
    ['mqtt.keepaliveS', 5, { publisher: true }],
    ['capture.replay.fps', 25, { source: true }],
    ['capture.source', 'gstreamer', { source: true }],
    ['capture.libcamera.extraArgs', ['--hflip'], { source: true }],
    ['log.level', 'debug', { log: true }],
    ['log.format', 'json', { log: true }],
  ] as const)('applies %s live, and restarts only what it touches', (key, value, touched) => {
    expect(planReload(base, base, with_({ [key]: value }))).toEqual({ changed: [key], needRestart: [], ...nothing, ...touched });
  });

  it('applies mqtt.outboxLimit and mqtt.flushTimeoutS without a new broker connection: they are read at each use', () => {
    expect(planReload(base, base, with_({ 'mqtt.outboxLimit': 10, 'mqtt.flushTimeoutS': 1 }))).toEqual({
      changed: ['mqtt.outboxLimit', 'mqtt.flushTimeoutS'],
      needRestart: [],
      ...nothing,
    });
  });

  it('reports keys that need a restart without applying them, an array as one key', () => {
    const next = with_({ stateDir: '/srv/state', 'knn.exactBelow': 10, 'inference.providers': ['cpu'] });
    const plan = planReload(base, base, next);
    expect({ ...plan, needRestart: plan.needRestart.sort() }).toEqual({
      changed: [],
      needRestart: ['inference.providers', 'knn.exactBelow', 'stateDir'],
      ...nothing,
    });
  });

  it('compares live keys with the configuration in force, and restart-only keys with the one the daemon started with', () => {
    const current = with_({ stateDir: '/srv/state', 'knn.k': 9 });
    // Back to the boot stateDir: nothing waits for a restart any more; k back to 5 is a change.
    expect(planReload(base, current, base)).toEqual({ changed: ['knn.k'], needRestart: [], ...nothing, classifier: true });
    // The same stateDir as the last reload still differs from the boot one.
    expect(planReload(base, current, current).needRestart).toEqual(['stateDir']);
    expect(planReload(base, current, current).changed).toEqual([]);
  });

  it('knows which keys are live by exact name or by section', () => {
    for (const key of ['site', 'knn.k', 'capture.queueSize', 'mqtt.clientId', 'log.level']) expect(isLiveKey(key), key).toBe(true);
    for (const key of ['sites', 'knn.kx', 'knn.exactBelow', 'capturex', 'mqttx.url', 'stateDir', 'models.gate', 'capture.maxFramePixels']) expect(isLiveKey(key), key).toBe(false);
  });
});

