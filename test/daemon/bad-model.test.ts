/**
 * Models whose sha and shapes are right but whose vectors are not: refused at load with a
 * message (the model in the config file too, not only a pushed one), and at run time a bad
 * vector is a counted frame failure with a status problem, never a crash.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { makeLabeledImages, runCommand, runLinewatch, tempDir, tinyModel, writeConfig, type RunningLinewatch } from '../helpers/daemon.js';
import { nanOnDarkFrames, nanWeights, zeroWeights } from '../models/bundles.js';
import { until } from '../ops/helpers.js';

const running: RunningLinewatch[] = [];
afterEach(async () => {
  for (const run of running.splice(0)) await run.stop('SIGKILL');
});

async function setup(model: string, extra: Record<string, unknown> = {}) {
  const dir = tempDir('linewatch-badmodel-');
  const images = await makeLabeledImages(join(dir, 'images'));
  const config = writeConfig(dir, { stateDir: join(dir, 'state'), model, mqtt: { enabled: false }, http: { port: 0 }, log: { format: 'json' }, ...extra });
  return { dir, images, config };
}

describe('a model with unusable vectors', () => {
  for (const [kind, make] of [['NaN', nanWeights], ['all-zero', zeroWeights]] as const) {
    it(`is refused at start when its weights are ${kind}, with the reason and no stack trace`, async () => {
      const { config } = await setup(await make(tinyModel, `bad-${kind}`));
      const result = await runCommand(['run', '--config', config]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(new RegExp(`^linewatch: tiny-test@bad-${kind} gives no usable vector for a probe image: .*NaN, infinite or all-zero vector`, 'm'));
      expect(result.stderr).toContain('  fix: the model file is broken');
      expect(result.stderr).not.toMatch(/^\s+at /m);
    });
  }

  it('fails only the frames it gives a NaN vector for: counted, a status problem, the daemon keeps running and stops cleanly', async () => {
    const model = await nanOnDarkFrames(tinyModel);
    const { dir, images } = await setup(model);
    const frames = join(dir, 'frames');
    mkdirSync(frames);
    writeFileSync(join(frames, 'dark.png'), await sharp({ create: { width: 28, height: 28, channels: 3, background: '#000000' } }).png().toBuffer());
    const { config } = await setup(model, { capture: { replay: { folder: frames, fps: 20 } }, enroll: { folder: images } });
    const daemon = runLinewatch(['run', '--config', config]);
    running.push(daemon);
    const ready = await daemon.waitForLog((l) => l.msg === 'running');
    expect(ready.references).toBe(8); // the gradients of the references gave usable vectors
    type Status = { state: string; problems: string[]; decisions: { failed: number; classified: number } };
    let status!: Status;
    await until(async () => {
      status = (await (await fetch(String(ready.status))).json()) as Status;
      return status.decisions.failed >= 3;
    }, 'three dark frames failed (status decisions.failed >= 3)');
    expect(status.state).toBe('running');
    expect(status.decisions.classified).toBe(0);
    expect(status.problems.join('\n')).toMatch(/inference failed: .*NaN, infinite or all-zero vector/);
    expect(await daemon.stop()).toBe(0);
  });
});
