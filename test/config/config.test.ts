import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, configKeys, envName, loadConfig } from '../../dist/config/index.js';

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
    expect(err.message).toMatch(/capture\.replay\.fps: .*>=0.*got -1/);
    expect(err.message).toContain('unknown key capture.sorce');
    expect(err.message).toMatch(/mqtt\.url: a URL such as mqtt:\/\/host:1883.*got "broker"/);
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

  it('derives env names from key paths', () => {
    expect(envName(['capture', 'replay', 'fps'])).toBe('LINEWATCH_CAPTURE_REPLAY_FPS');
    expect(envName(['knn', 'hnswEfConstruction'])).toBe('LINEWATCH_KNN_HNSW_EF_CONSTRUCTION');
  });

  it('documents every key in docs/configuration.md', () => {
    const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    const missing = configKeys().filter((key) => !doc.includes(`| \`${key}\` |`));
    expect(missing).toEqual([]);
  });
});
