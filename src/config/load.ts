import { dirname, isAbsolute, resolve } from 'node:path';
import YAML, { isScalar, LineCounter } from 'yaml';
import type { z } from 'zod';
import { errorText, HIDDEN, isMissingFile, readRegularFileSync, redactSecrets, type UserError } from '../common/index.js';
import { configuredCameras } from './cameras.js';
import { ConfigError } from './error.js';
import { configSchema, type Config } from './schema.js';

export const DEFAULT_CONFIG_PATH = '/etc/linewatch/config.yml';
const ENV_PREFIX = 'LINEWATCH_';
/** Aliases (`*name`) allowed in a config file: plenty for sharing a few values, far too few to blow up memory. */
const MAX_ALIAS_COUNT = 50;
/** LINEWATCH_ variables that are not config keys. */
const ENV_NOT_KEYS = new Set(['LINEWATCH_CONFIG']);
/** A configuration is a page or two of YAML; a larger file is not one. */
const maxConfigBytes = 1024 * 1024;

/** Keys holding file paths: resolved against the config file's folder, as a user reading the file expects. */
const PATH_KEYS = ['stateDir', 'model', 'capture.replay.folder', 'enroll.folder', 'mqtt.caFile', 'mqtt.certFile', 'mqtt.keyFile', 'models.trustedKeysDir', 'models.holdoutFolder', 'control.tokenFile'];

export interface LoadedConfig {
  config: Config;
  /** The file read, or null when none was given and the default does not exist. */
  path: string;
}

interface Leaf {
  path: string[];
  /** Strings take an env value as it is; other types parse it as YAML (numbers, booleans, lists). */
  isString: boolean;
}

/** Every leaf key of the schema, for env overrides. */
function leaves(schema: z.ZodType, path: string[] = []): Leaf[] {
  const def = (schema as unknown as { _zod: { def: { type: string; shape?: Record<string, z.ZodType>; innerType?: z.ZodType; options?: z.ZodType[] } } })._zod.def;
  switch (def.type) {
    case 'default':
    case 'prefault':
    case 'optional':
    case 'nullable':
      return leaves(def.innerType!, path);
    case 'object':
      if (path.length > 0 && isRoiLike(def.shape!)) return [{ path, isString: false }];
      return Object.entries(def.shape!).flatMap(([key, child]) => leaves(child, [...path, key]));
    default:
      return [{ path, isString: def.type === 'string' || def.type === 'enum' }];
  }
}

/** Small value objects (the ROI) are set whole from one variable, as YAML/JSON. */
function isRoiLike(shape: Record<string, z.ZodType>): boolean {
  return 'x' in shape && 'width' in shape;
}

export function envName(path: string[]): string {
  return ENV_PREFIX + path.map((key) => key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

const envLeaves = new Map(leaves(configSchema).map((leaf) => [envName(leaf.path), leaf]));

/** Every settable key path, e.g. `capture.replay.fps` (documentation is checked against it). */
export function configKeys(): string[] {
  return leaves(configSchema).map((leaf) => leaf.path.join('.'));
}

/**
 * Reads the YAML file, applies LINEWATCH_* overrides, validates against the schema and resolves
 * relative paths. Throws ConfigError naming each bad key, its value and what is expected.
 */
export function loadConfig(options: { path?: string | undefined; env?: NodeJS.ProcessEnv } = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const path = resolve(options.path ?? env['LINEWATCH_CONFIG'] ?? DEFAULT_CONFIG_PATH);
  const raw = readYaml(path);
  const fromEnv = applyEnv(raw, env);

  const result = configSchema.safeParse(raw);
  if (!result.success) {
    // One line per key: a value past a bound also fails the checks after it, which would say it again.
    const described = new Set<string>();
    const issues = result.error.issues.filter((issue) => {
      const key = issue.code === 'unrecognized_keys' ? `${issue.path.join('.')} ${issue.keys.join(' ')}` : issue.path.join('.');
      return !described.has(key) && described.add(key);
    });
    const lines = issues.map((issue) => describeIssue(issue, raw, fromEnv));
    throw new ConfigError(
      `invalid configuration in ${path}:\n${lines.map((l) => `  - ${l}`).join('\n')}`,
      'fix the keys above (docs/configuration.md lists every key); the daemon did not start',
    );
  }
  const config = result.data;
  refuseBothCameraForms(raw, fromEnv);
  configuredCameras(config);
  const base = dirname(path);
  for (const key of PATH_KEYS) resolvePath(config, key.split('.'), base);
  for (const camera of config.cameras ?? []) resolvePath(camera, ['capture', 'replay', 'folder'], base);
  return { config, path };
}

function resolvePath(config: object, parts: string[], base: string): void {
  const parent = parts.slice(0, -1).reduce<Record<string, unknown>>((obj, k) => obj[k] as Record<string, unknown>, config as Record<string, unknown>);
  const last = parts[parts.length - 1]!;
  const value = parent[last];
  if (typeof value === 'string' && !isAbsolute(value)) parent[last] = resolve(base, value);
}

/** The single-camera keys, which `cameras` replaces: given together, one of the two would be silently ignored. */
const SINGLE_CAMERA_KEYS = [['camera'], ['capture'], ['preprocess', 'roi']];

function refuseBothCameraForms(raw: Record<string, unknown>, fromEnv: Map<string, string>): void {
  if (raw['cameras'] === undefined || raw['cameras'] === null) return;
  const given = SINGLE_CAMERA_KEYS.filter((path) => path.reduce<unknown>((obj, k) => (obj && typeof obj === 'object' ? (obj as Record<string, unknown>)[k] : undefined), raw) !== undefined).map((path) => {
    const key = path.join('.');
    const env = [...fromEnv].find(([leaf]) => leaf === key || leaf.startsWith(`${key}.`))?.[1];
    return env ? `${key} (from ${env})` : key;
  });
  if (given.length === 0) return;
  throw new ConfigError(
    `cameras is given together with the single-camera key${given.length > 1 ? 's' : ''} ${given.join(', ')}: only one of the two forms can describe the cameras`,
    'give each camera its camera:, capture: and roi: inside cameras:, and remove the top-level ones (or remove cameras: for a single camera)',
  );
}

function readYaml(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readRegularFileSync(path, { what: 'configuration file', maxBytes: maxConfigBytes, hint: 'point --config (or LINEWATCH_CONFIG) at a YAML file; check its permissions' }).toString('utf8');
  } catch (err) {
    if (!isMissingFile(err)) throw new ConfigError((err as UserError).message, (err as UserError).hint);
    throw new ConfigError(`no configuration file at ${path}`, `copy config/example.yml to ${DEFAULT_CONFIG_PATH}, or pass --config FILE (or set LINEWATCH_CONFIG)`);
  }
  const value = parseYaml(text, path);
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(`${path} must hold a YAML mapping of keys (site:, capture:, mqtt: ...)`, 'see config/example.yml');
  }
  return value as Record<string, unknown>;
}

/** Writes LINEWATCH_<PATH> values into the raw config; returns which paths came from which variable. */
function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): Map<string, string> {
  const fromEnv = new Map<string, string>();
  const unknown: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || ENV_NOT_KEYS.has(name) || value === undefined) continue;
    const leaf = envLeaves.get(name);
    if (!leaf) {
      unknown.push(name);
      continue;
    }
    let target = raw;
    for (const key of leaf.path.slice(0, -1)) {
      const next = target[key];
      if (typeof next !== 'object' || next === null || Array.isArray(next)) target[key] = {};
      target = target[key] as Record<string, unknown>;
    }
    target[leaf.path[leaf.path.length - 1]!] = leaf.isString ? value : parseEnvValue(value);
    fromEnv.set(leaf.path.join('.'), name);
  }
  if (unknown.length > 0) {
    throw new ConfigError(
      `unknown environment variable${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}: not a configuration key`,
      'LINEWATCH_<PATH> names a key path in capitals with _ between words, e.g. LINEWATCH_MQTT_URL for mqtt.url; docs/configuration.md lists them',
    );
  }
  return fromEnv;
}

/** A variable's value as YAML (numbers, lists); as the text itself when it is not plain YAML, so the message quotes what was set. */
function parseEnvValue(value: string): unknown {
  try {
    return parseYaml(value, 'the value');
  } catch {
    return value;
  }
}

/**
 * Parses YAML without letting it print: the yaml package writes its warnings (an unknown tag, a
 * collection used as a key) to stderr, where they read like a crash. Every error and warning
 * becomes a ConfigError naming only where it is: the text may hold the broker password.
 */
function parseYaml(text: string, what: string): unknown {
  const lineCounter = new LineCounter();
  // uniqueKeys off: yaml checks each key against every earlier one (50,000 keys took minutes); keys are checked below instead.
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: false, logLevel: 'silent', lineCounter });
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) {
    const message = problem.message.split('\n')[0]!.replace(/:$/, '');
    throw new ConfigError(`${what} is not valid YAML: ${message}`, 'fix the YAML syntax at the line shown');
  }
  const repeated = repeatedKey(doc);
  if (repeated) {
    const { line, col } = lineCounter.linePos(repeated.offset);
    throw new ConfigError(`${what} is not valid YAML: the key "${repeated.key}" appears twice in one mapping, at line ${line}, column ${col}`, 'keep one of the two (the second would silently replace the first)');
  }
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    // yaml refuses a document whose aliases would expand without bound (a "billion laughs").
    throw new ConfigError(`${what} uses more YAML aliases (*name) than a configuration needs (${errorText(err)})`, `write the values out, or use at most ${MAX_ALIAS_COUNT} aliases`);
  }
}

/** The first key a mapping repeats: one Set per mapping, so linear in the size of the document. */
function repeatedKey(doc: YAML.Document): { key: string; offset: number } | undefined {
  let found: { key: string; offset: number } | undefined;
  YAML.visit(doc, {
    Map(_, map) {
      const seen = new Set<string>();
      for (const pair of map.items) {
        // Keys that are collections become "[object Object]"-like text in JS; the schema refuses them by name.
        if (!isScalar(pair.key)) continue;
        const key = String(pair.key.value);
        if (seen.has(key)) {
          found = { key: key.slice(0, 100), offset: pair.key.range?.[0] ?? 0 };
          return YAML.visit.BREAK;
        }
        seen.add(key);
      }
      return undefined;
    },
  });
  return found;
}

/** Keys a release replaced, with what to write instead: the old name is then refused with the fix, not as a misspelling. */
const REPLACED_KEYS: Record<string, string> = {
  'learning.duplicateDistance':
    'replaced by learning.duplicateShare: a share of the label\'s radius, not a cosine distance (default 0.01; docs/configuration.md)',
};

function describeIssue(issue: z.core.$ZodIssue, raw: Record<string, unknown>, fromEnv: Map<string, string>): string {
  const path = issue.path.map(String);
  if (issue.code === 'unrecognized_keys') {
    const where = path.length ? `${path.join('.')}.` : '';
    // Listed up to a point: a file of 50,000 made-up keys should not become a message as long.
    const listed = issue.keys.slice(0, 20).map((k) => shown(where + k).replace(/^"|"$/g, ''));
    const more = issue.keys.length > listed.length ? ` and ${issue.keys.length - listed.length} more` : '';
    const replaced = issue.keys.map((k) => REPLACED_KEYS[where + k]).find((text) => text !== undefined);
    return `unknown key ${listed.join(', ')}${more} (${replaced ?? 'misspelt? docs/configuration.md lists every key'})`;
  }
  const key = path.join('.') || '(top level)';
  const value = path.reduce<unknown>((obj, k) => (obj && typeof obj === 'object' ? (obj as Record<string, unknown>)[k] : undefined), raw);
  // A value set whole from one variable (the ROI) is wrong in one of its parts.
  const env = path.map((_, i) => fromEnv.get(path.slice(0, i + 1).join('.'))).find((name) => name !== undefined);
  const got = value === undefined ? 'missing' : `got ${shown(redactSecrets(value, path.at(-1)))}`;
  return `${key}: ${issue.message.replace(/^Invalid input: /, '')} (${got}${env ? `, from ${env}` : ''})`;
}

/** A bad value as the message quotes it: long ones cut, so a 100 KB value does not become a 100 KB message. */
function shown(value: unknown): string {
  if (value === HIDDEN) return 'a secret, not shown';
  const json = JSON.stringify(value) ?? String(value);
  return json.length > 200 ? `${json.slice(0, 200)}... (${json.length} characters)` : json;
}
