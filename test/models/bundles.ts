/**
 * Model bundles for push tests, made from the real shipped ones: a re-versioned copy, one with
 * random weights (same graph, so only the accuracy gate can tell), a tampered one, and signatures
 * by trusted and untrusted keys.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, packBundle, signBundle } from '../../dist/inference/index.js';
import { repoRoot, tempDir } from '../helpers/daemon.js';

export const int8Bundle = join(repoRoot, 'models/default-int8');
export const fp32Bundle = join(repoRoot, 'models/default-fp32');

export interface Keys {
  trustedDir: string;
  trusted: string;
  untrusted: string;
}

/** A key pair whose public half is in `trustedDir`, and one that is not trusted. */
export async function makeKeys(): Promise<Keys> {
  const trustedDir = tempDir('linewatch-trusted-');
  const other = tempDir('linewatch-untrusted-');
  const trusted = await generateKeyPair(trustedDir, 'technician');
  const untrusted = await generateKeyPair(other, 'stranger');
  return { trustedDir, trusted: trusted.privateKeyPath, untrusted: untrusted.privateKeyPath };
}

/** A copy of `source` whose manifest is edited (a new version, say), with the ONNX sha256 kept right. */
export async function copyBundle(source: string, edit: (manifest: Record<string, any>) => void = () => {}): Promise<string> {
  const dir = tempDir('linewatch-bundle-');
  await cp(source, dir, { recursive: true });
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  edit(manifest);
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return dir;
}

/** The same network with every weight replaced by noise of the same scale: it loads and runs, and knows nothing. */
export function randomWeights(source: string, version: string): Promise<string> {
  return rewriteWeights(source, version, '(rng.standard_normal(a.shape) * (a.std() + 1e-3)).astype(np.float32)');
}

/** The same network with NaN weights: right sha256, right shapes, and vectors that mean nothing at all. */
export function nanWeights(source: string, version: string): Promise<string> {
  return rewriteWeights(source, version, 'np.full(a.shape, np.nan, dtype=np.float32)');
}

/** The same network giving every image one vector (all ones): it loads and passes the probe, and tells nothing apart. */
export function constantVector(source: string, version: string): Promise<string> {
  return rewriteWeights(source, version, '(np.ones if t.name == m.graph.node[-1].input[-1] else np.zeros)(a.shape, dtype=np.float32)');
}

/** The same network with every weight zero: every vector is all zeros. */
export function zeroWeights(source: string, version: string): Promise<string> {
  return rewriteWeights(source, version, 'np.zeros(a.shape, dtype=np.float32)');
}

/**
 * The tiny test model with its vector scaled by sqrt(mean pixel + 0.9) (pixels normalised to
 * [-1, 1]): usable for gray and bright images, NaN for dark ones. A model that passes the probe
 * at load and fails frames at run time.
 */
export async function nanOnDarkFrames(source: string): Promise<string> {
  const dir = await copyBundle(source, (m) => (m.version = 'nan-on-dark'));
  const model = join(dir, 'model.onnx');
  execFileSync('/usr/bin/python3', ['-c', `
import sys, numpy as np, onnx
from onnx import helper, numpy_helper
m = onnx.load(sys.argv[1])
g = m.graph
last = g.node[-1]
last.output[0] = 'unscaled'
g.initializer.append(numpy_helper.from_array(np.array([0.9], dtype=np.float32), 'offset'))
g.node.extend([
    helper.make_node('ReduceMean', ['input'], ['mean'], axes=[1, 2, 3], keepdims=1),
    helper.make_node('Flatten', ['mean'], ['mean2'], axis=1),
    helper.make_node('Add', ['mean2', 'offset'], ['shifted']),
    helper.make_node('Sqrt', ['shifted'], ['scale']),
    helper.make_node('Mul', ['unscaled', 'scale'], ['embedding']),
])
onnx.checker.check_model(m)
onnx.save(m, sys.argv[1])
`, model]);
  return fixSha(dir);
}

/** Replaces every float weight tensor `a` by the Python expression `weights`, and fixes the manifest's sha256. */
async function rewriteWeights(source: string, version: string, weights: string): Promise<string> {
  const dir = await copyBundle(source, (m) => (m.version = version));
  const model = join(dir, 'model.onnx');
  execFileSync('/usr/bin/python3', ['-c', `
import sys, numpy as np, onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1])
rng = np.random.default_rng(7)
for i, t in enumerate(m.graph.initializer):
    a = numpy_helper.to_array(t)
    if a.dtype == np.float32 and a.size > 1:
        m.graph.initializer[i].CopyFrom(numpy_helper.from_array(${weights}, t.name))
onnx.save(m, sys.argv[1])
`, model]);
  return fixSha(dir);
}

/** Writes the sha256 of the changed model.onnx into the manifest. */
async function fixSha(dir: string): Promise<string> {
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  manifest.sha256 = createHash('sha256').update(await readFile(join(dir, manifest.file))).digest('hex');
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return dir;
}

export async function signedArchive(dir: string, key: string): Promise<Buffer> {
  await signBundle(dir, key);
  return packBundle(dir);
}
