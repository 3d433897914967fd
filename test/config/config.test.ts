import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, configKeys, configuredCameras, DEFAULT_CONFIG_PATH, envName, frameLimits, loadConfig } from '../../dist/config/index.js';

function configFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'lw-config-'));
  const path = join(dir, 'config.yml');
  writeFileSync(path, text);
  return path;
}

function failure(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('fills every default from an empty file and resolves paths against the file', () => {
    const path = configFile('stateDir: state\nmodel: /abs/model\n');
    const { config } = loadConfig({ path, env: {} });
    expect(config.capture.source).toBe('replay');
    expect(config.knn.exactBelow).toBe(300);
    expect(config.mqtt.url).toBe('mqtt://localhost:1883');
    expect(config.stateDir).toBe(join(path, '..', 'state'));
    expect(config.model).toBe('/abs/model');
  });

  it('names the key, the bad value and what is expected, for every bad key', () => {
    const path = configFile('site: two words\ncapture:\n  replay:\n    fps: -1\n  sorce: replay\nmqtt:\n  url: broker\n');
    const err = failure(() => loadConfig({ path, env: {} }));
    expect(err.message).toContain('site:');
    expect(err.message).toContain('"two words"');
    expect(err.message).toContain('capture.replay.fps: a number from 0 to 10000 (got -1)');
    expect(err.message).toContain('unknown key capture.sorce');
    expect(err.message).toMatch(/mqtt\.url: a URL such as mqtt:\/\/host:1883.*got "broker"/);
    // One line per bad key, though a value can fail more than one check.
    expect(err.message.split('\n').filter((l) => l.includes('capture.replay.fps'))).toHaveLength(1);
    expect(err.message.split('\n').filter((l) => l.includes('mqtt.url'))).toHaveLength(1);
    expect(err.hint).toContain('docs/configuration.md');
  });

  it('overrides any key from LINEWATCH_<PATH> and says which variable was bad', () => {
    const path = configFile('mqtt:\n  url: mqtt://a:1883\n');
    const { config } = loadConfig({
      path,
      env: {
        LINEWATCH_MQTT_URL: 'mqtt://b:1884',
        LINEWATCH_MQTT_PASSWORD: '0123',
        LINEWATCH_CAPTURE_STALL_TIMEOUT_MS: '7000',
        LINEWATCH_INFERENCE_PROVIDERS: '[cpu]',
        LINEWATCH_PREPROCESS_ROI: '{x: 1, y: 2, width: 30, height: 40}',
        LINEWATCH_HTTP_ENABLED: 'false',
      },
    });
    expect(config.mqtt.url).toBe('mqtt://b:1884');
    expect(config.mqtt.password).toBe('0123'); // a string key keeps leading zeros
    expect(config.capture.stallTimeoutMs).toBe(7000);
    expect(config.inference.providers).toEqual(['cpu']);
    expect(config.preprocess.roi).toEqual({ x: 1, y: 2, width: 30, height: 40 });
    expect(config.http.enabled).toBe(false);

    const err = failure(() => loadConfig({ path, env: { LINEWATCH_INFERENCE_THREADS: 'four' } }));
    expect(err.message).toMatch(/inference\.threads: .*got "four", from LINEWATCH_INFERENCE_THREADS/);
  });

  it('refuses an unknown LINEWATCH_ variable instead of ignoring a typo', () => {
    const path = configFile('');
    const err = failure(() => loadConfig({ path, env: { LINEWATCH_MQTT_URLL: 'x' } }));
    expect(err.message).toContain('LINEWATCH_MQTT_URLL');
  });

  it('explains a missing file and broken YAML', () => {
    expect(failure(() => loadConfig({ path: '/nonexistent/linewatch.yml', env: {} })).hint).toContain('--config');
    expect(failure(() => loadConfig({ path: configFile('mqtt: [unclosed\n'), env: {} })).message).toContain('not valid YAML');
    expect(failure(() => loadConfig({ path: configFile('- a\n- b\n'), env: {} })).message).toContain('mapping');
  });

  it('resolves every path key against the file\'s folder, and leaves absolute ones alone', () => {
    const keys = ['stateDir', 'model', 'capture.replay.folder', 'enroll.folder', 'mqtt.caFile', 'mqtt.certFile', 'mqtt.keyFile', 'models.trustedKeysDir', 'models.holdoutFolder', 'control.tokenFile'];
    const env = Object.fromEntries(keys.map((key) => [envName(key.split('.')), `rel/${key}`]));
    const path = configFile('');
    const { config } = loadConfig({ path, env: { ...env, LINEWATCH_MODEL: '/abs/model' } });
    const value = (key: string) => key.split('.').reduce<any>((obj, k) => obj[k], config);
    for (const key of keys.filter((k) => k !== 'model')) expect(value(key), key).toBe(join(path, '..', 'rel', key));
    expect(config.model).toBe('/abs/model');
  });

  it('takes an empty file or LINEWATCH_CONFIG for the path, and refuses a file that is not a mapping', () => {
    const path = configFile('');
    expect(loadConfig({ env: { LINEWATCH_CONFIG: path } }).path).toBe(path);
    const scalar = configFile('just words\n');
    expect(failure(() => loadConfig({ path: scalar, env: {} })).message).toBe(`${scalar} must hold a YAML mapping of keys (site:, capture:, mqtt: ...)`);
    expect(failure(() => loadConfig({ path: '/nonexistent/linewatch.yml', env: {} })).message).toBe('no configuration file at /nonexistent/linewatch.yml');
    expect(failure(() => loadConfig({ path: tmpdir(), env: {} })).message).toBe(`the configuration file ${tmpdir()} is a folder, not a regular file: it is not read`);
  });

  it('names one unknown variable, or several, with how variables are named', () => {
    const path = configFile('');
    const one = failure(() => loadConfig({ path, env: { LINEWATCH_MQTT_URLL: 'x' } }));
    expect(one.message).toBe('unknown environment variable LINEWATCH_MQTT_URLL: not a configuration key');
    expect(one.hint).toMatch(/^LINEWATCH_<PATH> names a key path/);
    expect(failure(() => loadConfig({ path, env: { LINEWATCH_A: 'x', LINEWATCH_B: 'y' } })).message).toBe('unknown environment variables LINEWATCH_A, LINEWATCH_B: not a configuration key');
  });

  it('says which nested key is unknown or missing, and sets a nested key from a variable when the file has a scalar there', () => {
    const err = failure(() => loadConfig({ path: configFile('mqtt:\n  urll: x\nknn: 3\n'), env: {} }));
    expect(err.message).toContain('unknown key mqtt.urll (misspelt? docs/configuration.md lists every key)');
    expect(err.message).toMatch(/knn: .*\(got 3\)/);
    const { config } = loadConfig({ path: configFile('knn: null\n'), env: { LINEWATCH_KNN_K: '9' } });
    expect(config.knn.k).toBe(9);
  });

  it('refuses a key a release replaced with what to write instead, not as a misspelling', () => {
    const err = failure(() => loadConfig({ path: configFile('learning:\n  duplicateDistance: 0.002\n'), env: {} }));
    expect(err.message).toContain('unknown key learning.duplicateDistance (replaced by learning.duplicateShare: a share of the label\'s radius');
    expect(err.message).not.toContain('misspelt');
  });

  it('derives env names from key paths', () => {
    expect(envName(['capture', 'replay', 'fps'])).toBe('LINEWATCH_CAPTURE_REPLAY_FPS');
    expect(envName(['knn', 'hnswEfConstruction'])).toBe('LINEWATCH_KNN_HNSW_EF_CONSTRUCTION');
  });

  // Each row: a key, a value past its bound, and the range the message must name.
  const outOfRange: [string, unknown, string][] = [
    ['capture.queueSize', 0, 'a whole number from 1 to 1000'],
    ['capture.queueSize', 1e6, 'a whole number from 1 to 1000'],
    ['capture.stallTimeoutMs', 99, 'a whole number from 100 to 3600000'],
    ['capture.restartMaxMs', 1e10, 'a whole number from 10 to 3600000'],
    ['capture.maxFrameBytes', 2 ** 40, 'a whole number from 1024 to 268435456'],
    ['capture.replay.fps', 0.001, '0 (as fast as the pipeline takes them) or from 0.01 to 10000'],
    ['capture.replay.fps', 20_000, 'a number from 0 to 10000'],
    ['capture.gstreamer.width', 100_000, 'a whole number from 1 to 16384'],
    ['capture.libcamera.fps', 0, 'a whole number from 1 to 1000'],
    ['preprocess.roi', { x: -1, y: 0, width: 1, height: 1 }, 'preprocess.roi.x: a whole number from 0 to 65535'],
    ['inference.threads', 100_000, 'a whole number from 1 to 256'],
    ['inference.workers', 200, 'a whole number from 1 to 32'],
    ['inference.maxBatch', 100_000_000, 'a whole number from 1 to 256'],
    ['inference.maxWaitMs', 1e9, 'a number from 0 to 1000'],
    ['knn.k', 1.5, 'a whole number from 1 to 256'],
    ['knn.hnswM', 1, 'a whole number from 2 to 100'],
    ['mqtt.keepaliveS', 65536, 'a whole number from 1 to 65535'],
    ['mqtt.statsIntervalS', 9_999_999, 'a whole number from 1 to 86400'],
    ['mqtt.outboxLimit', 1e12, 'a whole number from 1 to 100000000'],
    ['mqtt.flushTimeoutS', -1, 'a number from 0 to 600'],
    ['models.rollbackWindowS', 1e9, 'a whole number from 0 to 86400'],
    ['images.maxBytes', 10, 'a whole number from 1048576 to 17592186044416'],
    ['control.maxPayloadBytes', 2 ** 31, 'a whole number from 1024 to 536870912'],
    ['sparkplug.reportIntervalMs', 1, 'a whole number from 10 to 60000'],
    ['http.port', 70_000, 'a whole number from 0 to 65535'],
    ['ui.sessionIdleMinutes', 1e9, 'a whole number from 1 to 43200'],
    ['mqtt.topicRoot', 'a'.repeat(120_000), 'at most 1024 characters'],
    ['mqtt.topicRoot', 'plant/+/x', 'no MQTT wildcards'],
    ['mqtt.clientId', 'a\u0000b', 'no control characters'],
    ['site', 'x'.repeat(65), 'at most 64 characters'],
    ['stateDir', '/var/lib/\u0000x', 'no control characters'],
    ['knn.goodLabel', '../good', '1 to 64 letters, digits, spaces, dots, dashes or underscores'],
  ];
  it.each(outOfRange)('bounds %s, naming the allowed range', (key, value, expected) => {
    const path = configFile('');
    const err = failure(() => loadConfig({ path, env: { [envName(key.split('.'))]: typeof value === 'string' ? value : JSON.stringify(value) } }));
    expect(err.message).toContain(expected.includes(':') ? expected : `${key}: ${expected}`);
    expect(err.message).toContain(`from ${envName(key.split('.'))}`);
    // A huge value is cut in the message, not echoed whole.
    expect(err.message.length).toBeLessThan(1000);
  });

  it('accepts every bound itself, so the documented range is the real one', () => {
    const path = configFile('capture:\n  queueSize: 1000\n  replay:\n    fps: 0.01\ninference:\n  workers: 32\n  maxBatch: 256\nmqtt:\n  statsIntervalS: 86400\n  keepaliveS: 65535\nhttp:\n  port: 0\n');
    const { config } = loadConfig({ path, env: {} });
    expect([config.capture.queueSize, config.inference.workers, config.inference.maxBatch, config.mqtt.statsIntervalS, config.http.port]).toEqual([1000, 32, 256, 86400, 0]);
  });

  it('never echoes a secret: a URL password or a password of the wrong type', () => {
    const secret = 'hunter2-Secret';
    const fileErr = failure(() =>
      loadConfig({ path: configFile(`mqtt:\n  url: "http://operator:${secret}@broker:1883"\n  password: [${secret}]\n`), env: {} }),
    );
    expect(fileErr.message).toContain('mqtt.url: a URL such as mqtt://host:1883');
    expect(fileErr.message).toContain('operator:***@broker');
    expect(fileErr.message).toContain('mqtt.password: expected string, received array (got a secret, not shown)');
    expect(fileErr.message).not.toContain(secret);
    // The same through a variable, and a URL too broken to parse, and a whole section of the wrong shape.
    const envErr = failure(() => loadConfig({ path: configFile(''), env: { LINEWATCH_MQTT_URL: `broker://u:${secret}@[bad`, LINEWATCH_MQTT_PASSWORD: secret, LINEWATCH_HTTP_PORT: 'x' } }));
    expect(envErr.message).toContain('u:***@[bad');
    expect(envErr.message).not.toContain(secret);
    // A URL without its scheme, and URLs that only fail to parse (a port past 65535, an open bracket).
    for (const url of [`operator:${secret}@broker`, `mqtt://u:${secret}@broker:99999`, `mqtt://u:${secret}@[::1`]) {
      const err = failure(() => loadConfig({ path: configFile(''), env: { LINEWATCH_MQTT_URL: url } }));
      expect(err.message).toContain(`mqtt.url: a URL such as mqtt://host:1883 or mqtts://host:8883 (got "${url.replace(secret, '***')}", from LINEWATCH_MQTT_URL)`);
      expect(err.message).not.toContain(secret);
    }
    const shape = failure(() => loadConfig({ path: configFile(`mqtt: [{password: ${secret}}, "mqtt://u:${secret}@h"]\n`), env: {} }));
    expect(shape.message).toMatch(/^ {2}- mqtt: /m);
    expect(shape.message).not.toContain(secret);
  });

  it('quotes no line of a broken file (it may hold the password), only where it broke', () => {
    const err = failure(() => loadConfig({ path: configFile('mqtt:\n  password: "hunter2-Secret\n  url: [\n'), env: {} }));
    expect(err.message).toMatch(/not valid YAML: .* at line \d+, column \d+$/);
    expect(err.message).not.toContain('hunter2');
  });

  it('refuses a YAML alias bomb with a message, before it expands', () => {
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++) levels.push(`l${i}: &l${i} [${Array(9).fill(i === 1 ? '*a' : `*l${i - 1}`).join(', ')}]`);
    const err = failure(() => loadConfig({ path: configFile(levels.join('\n') + '\n'), env: {} }));
    expect(err.message).toContain('uses more YAML aliases (*name) than a configuration needs');
    expect(err.hint).toContain('at most 50 aliases');
    // A few aliases are fine (the error is then about the keys, not the aliases).
    const few = failure(() => loadConfig({ path: configFile('a: &a 3\nb: *a\n'), env: {} }));
    expect(few.message).toContain('unknown key a, b');
  });

  it('refuses a key written twice in one mapping, naming it and its line, also among 50,000 keys', () => {
    const twice = failure(() => loadConfig({ path: configFile('site: a\nmqtt:\n  url: mqtt://a:1883\n  url: mqtt://b:1883\n'), env: {} }));
    expect(twice.message).toMatch(/is not valid YAML: the key "url" appears twice in one mapping, at line 4, column 3$/);
    expect(twice.hint).toContain('keep one of the two');
    // The same key in two mappings is no repeat.
    const { config } = loadConfig({ path: configFile('capture:\n  replay:\n    folder: /a\nenroll:\n  folder: /b\n'), env: {} });
    expect([config.capture.replay.folder, config.enroll.folder]).toEqual(['/a', '/b']);
    // Checked in one pass: the yaml package's own check compares every pair (50,000 keys took minutes).
    const keys = Array.from({ length: 50_000 }, (_, i) => `k${i}: ${i}`);
    const many = failure(() => loadConfig({ path: configFile(keys.join('\n')), env: {} }));
    expect(many.message).toContain('unknown key k0, k1, k2');
    expect(many.message).toContain('k19 and 49980 more (misspelt?');
    const repeatedLast = failure(() => loadConfig({ path: configFile([...keys, 'k7: 0'].join('\n')), env: {} }));
    expect(repeatedLast.message).toContain('the key "k7" appears twice in one mapping, at line 50001, column 1');
  }, 120_000);

  it('turns YAML warnings into messages instead of printing them: an unknown tag in a file or a variable', async () => {
    const printed: string[] = [];
    const onWarning = (warning: Error) => printed.push(warning.message);
    process.on('warning', onWarning);
    try {
      const file = failure(() => loadConfig({ path: configFile('site: !custom x\n'), env: {} }));
      expect(file.message).toMatch(/is not valid YAML: Unresolved tag: !custom at line 1, column 7$/);
      // A variable that is not plain YAML is taken as the text it is, so the message quotes what was set.
      const env = failure(() => loadConfig({ path: configFile(''), env: { LINEWATCH_CAPTURE_QUEUE_SIZE: '!custom 5', LINEWATCH_KNN_K: '!!js/function "f"' } }));
      expect(env.message).toContain('capture.queueSize: a whole number from 1 to 1000 (got "!custom 5", from LINEWATCH_CAPTURE_QUEUE_SIZE)');
      expect(env.message).toContain('(got "!!js/function \\"f\\"", from LINEWATCH_KNN_K)');
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
      expect(printed).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('lists each problem on its own line, with a hint for every kind of file problem', () => {
    const path = configFile('sitee: a\nmqtt:\n  urll: x\n');
    expect(failure(() => loadConfig({ path, env: {} })).message).toBe(
      `invalid configuration in ${path}:\n  - unknown key mqtt.urll (misspelt? docs/configuration.md lists every key)\n  - unknown key sitee (misspelt? docs/configuration.md lists every key)`,
    );
    expect(failure(() => loadConfig({ path: configFile('capture:\n  replay:\n    fpss: 1\n'), env: {} })).message).toContain('unknown key capture.replay.fpss (misspelt?');
    expect(failure(() => loadConfig({ path: tmpdir(), env: {} })).hint).toContain('--config');
    expect(failure(() => loadConfig({ path: configFile('just words\n'), env: {} })).hint).toBe('see config/example.yml');
    expect(failure(() => loadConfig({ path: configFile('mqtt: [unclosed\n'), env: {} })).hint).toBe('fix the YAML syntax at the line shown');
    // No --config and no LINEWATCH_CONFIG: the documented default path.
    if (!existsSync(DEFAULT_CONFIG_PATH)) expect(failure(() => loadConfig({ env: {} })).message).toBe(`no configuration file at ${DEFAULT_CONFIG_PATH}`);
  });

  it('quotes keys and values as written, cut after 200 characters or 100 for a repeated key', () => {
    // A key with a quote in it keeps the quote; only the outer quotes of its JSON form go.
    expect(failure(() => loadConfig({ path: configFile("'si\"te': 1\n"), env: {} })).message).toContain('unknown key si\\"te (misspelt?');
    // A value whose JSON is exactly 200 characters is quoted whole; one more is cut, with its length.
    const at200 = `a ${'b'.repeat(196)}`;
    const whole = failure(() => loadConfig({ path: configFile(`site: "${at200}"\n`), env: {} })).message;
    expect(whole).toContain(`(got "${at200}")`);
    const cut = failure(() => loadConfig({ path: configFile(`site: "${at200}c"\n`), env: {} })).message;
    expect(cut).toContain(`(got "${at200}c... (201 characters))`);
    const longKey = 'k'.repeat(150);
    expect(failure(() => loadConfig({ path: configFile(`${longKey}: 1\n${longKey}: 2\n`), env: {} })).message).toContain(`the key "${'k'.repeat(100)}" appears twice`);
  });

  it('takes a variable set to undefined as unset and a choice as text, and tells two collection keys apart from a repeated key', () => {
    const path = configFile('knn:\n  k: 7\n');
    expect(loadConfig({ path, env: { LINEWATCH_KNN_K: undefined, LINEWATCH_NOT_A_KEY: undefined } }).config.knn.k).toBe(7);
    // A choice is text, as a string is: not YAML, whose comment would hide the rest of the value.
    expect(failure(() => loadConfig({ path, env: { LINEWATCH_LOG_LEVEL: 'debug # verbose' } })).message).toContain('(got "debug # verbose", from LINEWATCH_LOG_LEVEL)');
    // Collection keys are refused by the schema as unknown keys, not as one key "appearing twice".
    const err = failure(() => loadConfig({ path: configFile('? [a]\n: 1\n? [b]\n: 2\n'), env: {} }));
    expect(err.message).toContain('unknown key');
    expect(err.message).not.toContain('appears twice');
  });

  it('refuses 50 aliases of a value, which the yaml package by default lets through, and takes 49', () => {
    const aliases = (n: number) => configFile(`site: &s a\nline: [${Array(n).fill('*s').join(', ')}]\n`);
    expect(failure(() => loadConfig({ path: aliases(49), env: {} })).message).not.toContain('aliases');
    expect(failure(() => loadConfig({ path: aliases(50), env: {} })).message).toContain('uses more YAML aliases (*name) than a configuration needs');
  });

  it('documents every key in docs/configuration.md', () => {
    const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    const missing = configKeys().filter((key) => !doc.includes(`| \`${key}\` |`));
    expect(missing).toEqual([]);
  });

  describe('cameras', () => {
    it('makes the single-camera keys a list of one camera, env overrides included', () => {
      const path = configFile('site: plant\nline: l1\ncamera: top\ncapture:\n  source: gstreamer\npreprocess:\n  roi: {x: 1, y: 2, width: 3, height: 4}\n');
      const { config } = loadConfig({ path, env: { LINEWATCH_CAPTURE_GSTREAMER_PRESET: 'test', LINEWATCH_CAMERA: 'side' } });
      const [only, ...rest] = configuredCameras(config);
      expect(rest).toEqual([]);
      expect(only).toMatchObject({ site: 'plant', line: 'l1', camera: 'side', roi: { x: 1, y: 2, width: 3, height: 4 } });
      expect(only!.capture.source).toBe('gstreamer');
      expect(only!.capture.gstreamer.preset).toBe('test');
    });

    it('gives each camera of the list its own source, ROI and topic levels, site and line from the top level by default', () => {
      const path = configFile(
        [
          'site: plant',
          'line: l1',
          'cameras:',
          '  - camera: top',
          '    capture: {source: gstreamer, maxFramePixels: 60000000, gstreamer: {preset: test}}',
          '    roi: {x: 0, y: 0, width: 10, height: 10}',
          '  - camera: side',
          '    line: l2',
          '    capture: {source: replay, maxFrameBytes: 20000000, replay: {folder: frames}}',
        ].join('\n'),
      );
      const { config } = loadConfig({ path, env: {} });
      const cameras = configuredCameras(config);
      expect(cameras.map((c) => [c.site, c.line, c.camera, c.capture.source])).toEqual([
        ['plant', 'l1', 'top', 'gstreamer'],
        ['plant', 'l2', 'side', 'replay'],
      ]);
      expect(cameras[0]!.roi).toEqual({ x: 0, y: 0, width: 10, height: 10 });
      expect(cameras[1]!.roi).toBeNull();
      // Relative paths of a camera resolve against the file, as the top-level ones do.
      expect(cameras[1]!.capture.replay.folder).toBe(join(path, '..', 'frames'));
      // The preprocessing admits the largest frame any camera may deliver.
      expect(frameLimits(config)).toEqual({ maxBytes: 20_000_000, maxPixels: 60_000_000 });
    });

    it('refuses two cameras with the same topic levels, naming both', () => {
      const path = configFile('cameras:\n  - camera: a\n  - camera: b\n  - camera: a\n    line: line\n');
      const err = failure(() => loadConfig({ path, env: {} }));
      expect(err.message).toContain('cameras.0 and cameras.2 are both site/line/a');
      expect(err.hint).toContain('its own camera name');
      // Another line is another topic: no clash.
      expect(configuredCameras(loadConfig({ path: configFile('cameras:\n  - camera: a\n  - camera: a\n    line: other\n'), env: {} }).config)).toHaveLength(2);
    });

    it('refuses two cameras of one name with Sparkplug, whose devices are named by the camera alone', () => {
      const list = 'cameras:\n  - camera: a\n  - camera: b\n  - camera: a\n    line: other\n';
      for (const profile of ['sparkplug', 'both']) {
        const err = failure(() => loadConfig({ path: configFile(`${list}mqtt: {profile: ${profile}}\n`), env: {} }));
        expect(err.message).toContain(`cameras.0 and cameras.2 are both named "a": with mqtt.profile ${profile}`);
        expect(err.hint).toBe('give each camera its own camera name');
      }
      expect(configuredCameras(loadConfig({ path: configFile('cameras:\n  - camera: a\n  - camera: b\n    line: other\nmqtt: {profile: sparkplug}\n'), env: {} }).config)).toHaveLength(2);
    });

    it('refuses an empty list, and a camera named like a device topic', () => {
      expect(failure(() => loadConfig({ path: configFile('cameras: []\n'), env: {} })).message).toMatch(/cameras: at least one camera .* \(got \[\]\)/);
      for (const topic of ['cmd', 'stats', 'available']) {
        const err = failure(() => loadConfig({ path: configFile(`cameras:\n  - camera: ok\n  - camera: ${topic}\n`), env: {} }));
        expect(err.message).toContain(`cameras.1.camera "${topic}" is the name of one of the device's own topics`);
        expect(err.hint).toBe('name the camera something other than cmd, stats, available');
      }
      expect(failure(() => loadConfig({ path: configFile('cameras:\n  - capture: {source: replay}\n'), env: {} })).message).toContain('cameras.0.camera');
    });

    it('refuses both forms at once, saying which single-camera keys (and variables) clash', () => {
      const list = 'cameras:\n  - camera: a\n';
      const err = failure(() => loadConfig({ path: configFile(`camera: top\npreprocess:\n  roi: {x: 0, y: 0, width: 1, height: 1}\n${list}`), env: {} }));
      expect(err.message).toContain('single-camera keys camera, preprocess.roi');
      expect(err.hint).toContain('inside cameras:');
      const fromEnv = failure(() => loadConfig({ path: configFile(list), env: { LINEWATCH_CAPTURE_SOURCE: 'gstreamer' } }));
      expect(fromEnv.message).toContain('capture (from LINEWATCH_CAPTURE_SOURCE)');
      // The list itself may come from the environment, as YAML.
      const { config } = loadConfig({ path: configFile(''), env: { LINEWATCH_CAMERAS: '[{camera: x}, {camera: y}]' } });
      expect(configuredCameras(config).map((c) => c.camera)).toEqual(['x', 'y']);
    });
  });
});
