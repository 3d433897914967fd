import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { openRegularFile, readRegularFile, UserError } from '../common/index.js';
import { parseManifest, type Manifest } from './manifest.js';

/** A manifest is a page of JSON; anything larger is not one. */
export const maxManifestBytes = 1024 * 1024;
/** ONNX's protobuf cannot hold more than 2 GiB (larger models keep their weights in external files, which linewatch does not take). */
export const maxModelBytes = 2 * 1024 ** 3;

export interface Bundle {
  dir: string;
  manifest: Manifest;
  modelPath: string;
  /** "<name>@<version>": which model produced a stored vector. */
  key: string;
}

/** Read and check a model bundle folder: manifest fields, then the model file's sha256. */
export async function loadBundle(dir: string): Promise<Bundle> {
  const absolute = resolve(dir);
  const manifestPath = join(absolute, 'manifest.json');
  const text = (await readRegularFile(manifestPath, { what: 'model manifest', maxBytes: maxManifestBytes, hint: 'point the model setting at a bundle folder holding manifest.json and the .onnx file' })).toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${manifestPath} is not valid JSON: ${(err as Error).message}`, 'fix the JSON syntax or re-copy the bundle', { cause: err });
  }
  const manifest = parseManifest(json, manifestPath);
  const modelPath = join(absolute, manifest.file);
  const actual = await sha256File(modelPath);
  if (actual !== manifest.sha256) {
    throw new UserError(
      `${manifest.file} sha256 ${actual} does not match manifest ${manifest.sha256}: the bundle is corrupt or was edited; re-copy it`,
      `bundle folder: ${absolute}`,
    );
  }
  return { dir: absolute, manifest, modelPath, key: `${manifest.name}@${manifest.version}` };
}

async function sha256File(path: string): Promise<string> {
  const hint = 'the manifest "file" must name the .onnx file in the bundle folder; re-copy the bundle';
  const { handle } = await openRegularFile(path, { what: 'model file', maxBytes: maxModelBytes, hint });
  const hash = createHash('sha256');
  try {
    await pipeline(handle.createReadStream(), hash);
  } catch (err) {
    throw new UserError(`cannot read model file ${path}: ${(err as Error).message}`, hint, { cause: err });
  }
  return hash.digest('hex');
}
