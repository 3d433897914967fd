import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UserError } from '../../dist/common/index.js';
import { loadBundle } from '../../dist/inference/index.js';
import { editedBundle, fixtureDir } from './helpers.js';

describe('loadBundle', () => {
  it('loads the fixture bundle with its key and classifier settings', async () => {
    const bundle = await loadBundle(fixtureDir);
    expect(bundle.key).toBe('tiny-test@1');
    expect(bundle.modelPath).toBe(join(bundle.dir, 'model.onnx'));
    expect(bundle.manifest.input).toMatchObject({ name: 'input', width: 28, height: 28, colour: 'gray', mean: [0.5], std: [0.5] });
    expect(bundle.manifest.output).toEqual({ name: 'embedding', dimension: 16 });
    expect(bundle.manifest.classifier).toEqual({ k: 3, threshold: 0.5, unknownDistance: 0.6, goodLabel: 'good' });
  });

  it('names a missing field and how to fix it', async () => {
    const dir = await editedBundle((m) => delete m.output.dimension);
    const err = await loadBundle(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toMatch(/manifest\.json: output\.dimension is missing$/);
    expect((err as UserError).hint).toMatch(/add "output\.dimension"/);
  });

  it('names a wrong value and what is allowed', async () => {
    const cases: [(m: Record<string, any>) => void, RegExp][] = [
      [(m) => (m.input.colour = 'grey'), /input\.colour is "grey"/],
      [(m) => (m.input.mean = [0.5, 0.5, 0.5]), /input\.mean is \[0\.5,0\.5,0\.5\]/],
      [(m) => (m.input.std = [0]), /input\.std is \[0\]/],
      [(m) => (m.precision = 'fp16'), /precision is "fp16"/],
      [(m) => (m.classifier.threshold = 2), /classifier\.threshold is 2/],
      [(m) => (m.file = '../model.onnx'), /file is "\.\.\/model\.onnx"/],
      [(m) => (m.classifier.goodLabel = '../good'), /classifier\.goodLabel: "\.\.\/good" is not a usable label/],
    ];
    for (const [edit, message] of cases) {
      await expect(loadBundle(await editedBundle(edit))).rejects.toThrow(message);
    }
  });

  it('refuses a model file whose sha256 does not match the manifest', async () => {
    const dir = await editedBundle(() => {});
    await appendFile(join(dir, 'model.onnx'), Buffer.from([0]));
    const err = await loadBundle(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(
      /^model\.onnx sha256 [0-9a-f]{64} does not match manifest c6a497e2[0-9a-f]{56}: the bundle is corrupt or was edited; re-copy it$/,
    );
  });

  it('explains a folder without a manifest', async () => {
    await expect(loadBundle('/nonexistent/bundle')).rejects.toThrow(/cannot read the model manifest \/nonexistent\/bundle\/manifest\.json: it does not exist/);
  });
});
