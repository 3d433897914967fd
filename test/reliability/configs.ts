/**
 * Mutated configurations: YAML files and LINEWATCH_* overrides, loaded in process by the daemon's
 * own loadConfig. Each must load or end in a ConfigError that names the problem (and never echoes
 * a secret); nothing may throw anything else.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { configKeys, envName, loadConfig } from '../../dist/config/index.js';
import type { Draw } from './draw.js';
import { Defect, type Tally } from './tally.js';

const keys = configKeys();

/** A config that loads: the fuzz changes one thing at a time in it. */
function baseConfig(dir: string): Record<string, unknown> {
  return {
    site: 'fuzz',
    line: 'line-1',
    camera: 'cam-1',
    stateDir: join(dir, 'state'),
    model: join(dir, 'model'),
    capture: { source: 'replay', replay: { folder: join(dir, 'frames'), fps: 0 } },
    knn: { threshold: 0.5 },
    mqtt: { url: 'mqtt://127.0.0.1:1883', username: 'line', password: 'pw' },
    http: { port: 0 },
  };
}

/** Values no key should choke on: out of range, wrong type, huge, odd text. */
export function hostileValue(draw: Draw): unknown {
  return draw.pick<() => unknown>([
    () => draw.pick([-1, 0, -0, 0.5, 1.5, 2 ** 31, 2 ** 53 + 2, 1e6, 1e8, 1e308, -1e308, NaN, Infinity, -Infinity]),
    () => draw.pick(['', ' ', '\u0000', '💥', '../../../../etc/passwd', '/dev/zero', '/proc/self/mem', '0x10', '1e3', ' 5 ', 'true', 'null']),
    () => 'x'.repeat(draw.int(1_000, 200_000)),
    () => draw.text('abc/:@[]{}#&*!|>%\'"\\ \t\n\u200b€', 1, 60),
    () => draw.pick([true, false, null, [], [1, 2], ['cpu', 'cpu'], {}, { a: 1 }, { x: -1, y: 0, width: 0, height: 1e9 }]),
  ])();
}

/** Whole documents that have broken YAML readers: bombs, depth, tags, odd bytes. */
function hostileYaml(draw: Draw, base: string): string {
  const depth = draw.int(100, 20_000);
  return draw.pick<() => string>([
    () => aliasBomb(draw.int(4, 12)),
    () => '['.repeat(depth) + ']'.repeat(depth),
    () => Array.from({ length: Math.min(depth, 2_000) }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n') + ' 1',
    () => `site: !!binary ${draw.bytes(20).toString('base64')}\n`,
    () => `site: !custom-tag x\nline: !!js/function "function () {}"\n`,
    () => `stateDir: !!timestamp 2001-12-14\n`,
    () => `base: &b {site: a}\n<<: *b\n`,
    () => `${base}\n${base}`,
    () => `\ufeff${base}`,
    () => Buffer.concat([Buffer.from(base), draw.bytes(draw.int(1, 64))]).toString('latin1'),
    () => `- ${base.replace(/\n/g, '\n  ')}`,
    () => draw.pick(['42', '"text"', 'null', '~', '---\n---\n', '...', '%YAML 9.9\n---\nsite: a', '*undefined_alias', '&a [*a]']),
    // Many keys: the yaml package's own duplicate check was pairwise (5,000 keys cost seconds, 50,000 minutes).
    () => Array.from({ length: draw.int(1_000, 8_000) }, (_, i) => `k${i}: ${i}`).join('\n'),
  ])();
}

function aliasBomb(levels: number): string {
  const lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i <= levels; i++) lines.push(`a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(',')}]`);
  return lines.join('\n') + '\n';
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let at = target;
  for (const key of path.slice(0, -1)) {
    if (typeof at[key] !== 'object' || at[key] === null) at[key] = {};
    at = at[key] as Record<string, unknown>;
  }
  at[path[path.length - 1]!] = value;
}

interface ConfigInput {
  kind: string;
  text: string;
  env: Record<string, string>;
  /** A secret planted in the input: no message may repeat it. */
  secret?: string;
}

export function configInput(draw: Draw, dir: string): ConfigInput {
  const config = baseConfig(dir);
  const base = YAML.stringify(config);
  const secret = `s3cret-${draw.uuid()}`;
  const kinds: (() => ConfigInput)[] = [
    () => {
      const key = draw.pick(keys);
      setPath(config, key.split('.'), hostileValue(draw));
      return { kind: `value of ${key}`, text: YAML.stringify(config), env: {} };
    },
    () => {
      const path = [...draw.pick(keys).split('.').slice(0, draw.int(0, 1)), draw.pick(['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', draw.text('abcXYZ_-. ', 1, 12)])];
      setPath(config, path, hostileValue(draw));
      return { kind: `unknown key ${path.join('.')}`, text: YAML.stringify(config).replace('__proto__', '"__proto__"'), env: {} };
    },
    () => ({ kind: 'cut or flipped YAML', text: (draw.chance(0.5) ? draw.truncate(Buffer.from(base)) : draw.flip(Buffer.from(base), 6)).toString('latin1'), env: {} }),
    () => ({ kind: 'hostile YAML', text: hostileYaml(draw, base), env: {} }),
    () => {
      const key = draw.pick(keys);
      const value = draw.pick<() => string>([() => String(hostileValue(draw)), () => JSON.stringify(hostileValue(draw)), () => aliasBomb(draw.int(3, 10)), () => draw.text('[]{}:&*!|>-,"\' ab1.', 1, 40)])();
      return { kind: `env ${envName(key.split('.'))}`, text: base, env: { [envName(key.split('.'))]: value } };
    },
    () => ({ kind: 'unknown env', text: base, env: { [`LINEWATCH_${draw.text('ABCZ_019', 1, 20)}`]: 'x' } }),
    () => {
      setPath(config, ['mqtt', 'password'], draw.pick<unknown>([[secret], { value: secret }]));
      return { kind: 'password of the wrong type', text: YAML.stringify(config), env: {}, secret };
    },
    () => {
      const url = draw.pick([`mqtt://line:${secret}@127.0.0.1:99999`, `mqtt://line:${secret}@[::1`, `ftp://line:${secret}@host/`, `line:${secret}@host`, `mqtt://line:${secret}@host`]);
      return draw.chance(0.5)
        ? { kind: 'bad URL with a password', text: base, env: { LINEWATCH_MQTT_URL: url }, secret }
        : (setPath(config, ['mqtt', 'url'], url), { kind: 'bad URL with a password', text: YAML.stringify(config), env: {}, secret });
    },
  ];
  return draw.pick(kinds)();
}

/** Loads `count` mutated configs (or until `until`), each a probe of family `configs`. */
export async function fuzzConfigs(tally: Tally, draw: Draw, dir: string, count: number, until = Infinity): Promise<void> {
  const path = join(dir, 'config.yml');
  for (let i = 0; i < count && Date.now() < until; i++) {
    const input = configInput(draw, dir);
    writeFileSync(path, input.text);
    await tally.probe(
      'configs and env',
      `${input.kind}: ${JSON.stringify(input.env).slice(0, 100)} ${input.text.slice(0, 100)}`,
      async () => {
        try {
          loadConfig({ path, env: input.env });
          return 'accepted';
        } catch (err) {
          if (input.secret && err instanceof Error && err.message.includes(input.secret)) throw new Defect(`the message repeats the secret: ${err.message.slice(0, 120)}`);
          throw err;
        }
      },
      10_000,
    );
  }
}
