import { checkLabel, UserError } from '../common/index.js';

/** manifest.json of a model bundle, as defined in docs/architecture.md ("Model bundle"). */
export interface Manifest {
  name: string;
  version: string;
  file: string;
  sha256: string;
  precision: 'fp32' | 'int8';
  input: {
    name: string;
    width: number;
    height: number;
    layout: 'NCHW';
    colour: 'gray' | 'rgb';
    mean: number[];
    std: number[];
  };
  output: { name: string; dimension: number };
  metric: 'cosine';
  /** Settings calibrated by training; config overrides them. */
  classifier?: { k: number; threshold: number; unknownDistance: number; goodLabel: string };
}

type Obj = Record<string, unknown>;

/** Validate parsed manifest JSON; every refusal names the field and what a valid value looks like. */
export function parseManifest(json: unknown, where: string): Manifest {
  const fail = (field: string, problem: string, fix: string): never => {
    throw new UserError(`${where}: ${field} ${problem}`, `${fix}; see "Model bundle" in docs/architecture.md`);
  };
  const object = (value: unknown, field: string): Obj => {
    if (value === undefined) fail(field, 'is missing', `add the "${field}" object`);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(field, 'is not an object', `make "${field}" a JSON object`);
    return value as Obj;
  };
  const get = (obj: Obj, path: string): [unknown, string] => {
    const key = path.slice(path.lastIndexOf('.') + 1);
    if (!(key in obj)) fail(path, 'is missing', `add "${path}"`);
    return [obj[key], path];
  };
  const text = (obj: Obj, path: string): string => {
    const [value] = get(obj, path);
    if (typeof value !== 'string' || value.trim() === '') fail(path, `is ${JSON.stringify(value)}`, `set "${path}" to a non-empty string`);
    return value as string;
  };
  // The name and version make the model key, which names a folder and shows in every event.
  const key = (obj: Obj, path: string): string => {
    const value = text(obj, path);
    if (value.length > 100 || /[\u0000-\u001f\u007f]/.test(value)) fail(path, value.length > 100 ? `is ${value.length} characters long` : 'holds control characters', `set "${path}" to at most 100 printable characters`);
    return value;
  };
  const oneOf = <T extends string>(obj: Obj, path: string, allowed: readonly T[]): T => {
    const [value] = get(obj, path);
    if (!allowed.includes(value as T)) fail(path, `is ${JSON.stringify(value)}`, `set "${path}" to one of ${allowed.map((a) => `"${a}"`).join(', ')}`);
    return value as T;
  };
  const number = (obj: Obj, path: string, min: number, max: number, integer: boolean): number => {
    const [value] = get(obj, path);
    const ok = typeof value === 'number' && Number.isFinite(value) && value >= min && value <= max && (!integer || Number.isInteger(value));
    if (!ok) fail(path, `is ${JSON.stringify(value)}`, `set "${path}" to ${integer ? 'an integer' : 'a number'} in [${min}, ${max}]`);
    return value as number;
  };
  const numbers = (obj: Obj, path: string, count: number, positive: boolean): number[] => {
    const [value] = get(obj, path);
    const ok = Array.isArray(value) && value.length === count && value.every((v) => typeof v === 'number' && Number.isFinite(v) && (!positive || v > 0));
    if (!ok) fail(path, `is ${JSON.stringify(value)}`, `set "${path}" to ${count} ${positive ? 'positive ' : ''}number(s), one per channel`);
    return value as number[];
  };

  const root = object(json, 'manifest');
  const input = object(root['input'], 'input');
  const output = object(root['output'], 'output');
  const colour = oneOf(input, 'input.colour', ['gray', 'rgb'] as const);
  const channels = colour === 'gray' ? 1 : 3;
  const sha256 = text(root, 'sha256').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(sha256)) fail('sha256', `is ${JSON.stringify(root['sha256'])}`, 'set "sha256" to the 64 hex digits of `sha256sum <file>`');
  const file = text(root, 'file');
  if (file.includes('/') || file.includes('\\')) fail('file', `is ${JSON.stringify(file)}`, 'name a file inside the bundle folder, without a path');

  const manifest: Manifest = {
    name: key(root, 'name'),
    version: key(root, 'version'),
    file,
    sha256,
    precision: oneOf(root, 'precision', ['fp32', 'int8'] as const),
    input: {
      name: text(input, 'input.name'),
      width: number(input, 'input.width', 1, 65535, true),
      height: number(input, 'input.height', 1, 65535, true),
      layout: oneOf(input, 'input.layout', ['NCHW'] as const),
      colour,
      mean: numbers(input, 'input.mean', channels, false),
      std: numbers(input, 'input.std', channels, true),
    },
    output: { name: text(output, 'output.name'), dimension: number(output, 'output.dimension', 1, 65535, true) },
    metric: oneOf(root, 'metric', ['cosine'] as const),
  };
  if (root['classifier'] !== undefined) {
    const classifier = object(root['classifier'], 'classifier');
    manifest.classifier = {
      k: number(classifier, 'classifier.k', 1, 1000, true),
      threshold: number(classifier, 'classifier.threshold', 0, 1, false),
      unknownDistance: number(classifier, 'classifier.unknownDistance', 0, 2, false),
      goodLabel: checkLabel(text(classifier, 'classifier.goodLabel'), `${where}: classifier.goodLabel`),
    };
  }
  return manifest;
}
