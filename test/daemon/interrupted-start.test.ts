/** SIGTERM while the daemon is still starting ends it within its own steps, never "ignored until start-up is over". */
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeLabeledImages, runLinewatch, tempDir, tinyModel, writeConfig, type RunningLinewatch } from '../helpers/daemon.js';

const running: RunningLinewatch[] = [];
afterEach(async () => {
  for (const run of running.splice(0)) await run.stop('SIGKILL');
});

describe('SIGTERM during start-up', () => {
  it('stops a daemon that is enrolling its starting references: logs it, never reaches running, exits by itself', async () => {
    const dir = tempDir('linewatch-interrupt-');
    const sample = await makeLabeledImages(join(dir, 'sample'), 1);
    // Thousands of references to enroll at start: seconds of work after "model loaded".
    const images = join(dir, 'images');
    for (const label of ['good', 'scratch']) {
      mkdirSync(join(images, label), { recursive: true });
      for (let i = 0; i < 3000; i++) copyFileSync(join(sample, label, `${label}-0.png`), join(images, label, `${i}.png`));
    }
    const config = writeConfig(dir, { stateDir: join(dir, 'state'), model: tinyModel, enroll: { folder: images }, mqtt: { enabled: false }, http: { port: 0 }, log: { format: 'json' } });
    const daemon = runLinewatch(['run', '--config', config]);
    running.push(daemon);
    await daemon.waitForLog((l) => l.msg === 'model loaded');
    daemon.child.kill('SIGTERM');
    await daemon.exited;
    // Either the work drained and it exited 0, or what could not be interrupted ended with the signal.
    expect([0, 'SIGTERM']).toContain(daemon.child.exitCode ?? daemon.child.signalCode);
    const messages = daemon.logs.map((l) => l.msg);
    expect(messages).toContain('stopped while starting');
    expect(messages).not.toContain('enrolled the starting references');
    expect(messages).not.toContain('running');
  });
});
