/**
 * Hostile files given to the real CLI and daemon: FIFOs, /dev/zero, symlinks to it, a
 * decompression bomb. Each ends in a message (CLI) or a counted dropped frame (daemon), never a
 * hang, a crash or a read that grows without bound; the daemon still stops on SIGTERM.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pngBomb } from '../helpers/hostile.js';
import { freePort } from '../helpers/mosquitto.js';
import { makeLabeledImages, runCommand, runLinewatch, tempDir, tinyModel, writeConfig, type RunningLinewatch } from '../helpers/daemon.js';
import { until } from '../ops/helpers.js';

const running: RunningLinewatch[] = [];
afterEach(async () => {
  for (const run of running.splice(0)) await run.stop('SIGKILL');
});

async function setup(extra: Record<string, unknown> = {}) {
  const dir = tempDir('linewatch-hostile-');
  const images = await makeLabeledImages(join(dir, 'images'));
  const config = writeConfig(dir, {
    stateDir: join(dir, 'state'),
    model: tinyModel,
    mqtt: { enabled: false },
    http: { port: 0 },
    log: { format: 'json' },
    ...extra,
  });
  return { dir, images, config };
}

/** A FIFO, a symlink to /dev/zero and a 16000x16000 PNG bomb in `dir`. */
function hostile(dir: string): { fifo: string; zero: string; bomb: string } {
  const fifo = join(dir, 'fifo.jpg');
  execFileSync('mkfifo', [fifo]);
  const zero = join(dir, 'zero.jpg');
  symlinkSync('/dev/zero', zero);
  const bomb = join(dir, 'bomb.png');
  writeFileSync(bomb, pngBomb(16000, 16000));
  return { fifo, zero, bomb };
}

describe('hostile files given to the CLI', () => {
  it('classify refuses a FIFO, /dev/zero, a symlink to it and a PNG bomb one by one, and classifies the good image', async () => {
    const { dir, images, config } = await setup();
    expect((await runCommand(['enroll', images, '--config', config])).code).toBe(0);
    const { fifo, zero, bomb } = hostile(dir);
    const good = join(images, 'good', 'good-0.png');
    const result = await runCommand(['classify', fifo, '/dev/zero', zero, bomb, good, '--config', config, '--json']);
    expect(result.code).toBe(1);
    const { results } = JSON.parse(result.stdout) as { results: { image: string; error?: string; label?: string }[] };
    expect(results.map((r) => r.error ?? r.label)).toEqual([
      `the image ${fifo} is a FIFO (named pipe), not a regular file: it is not read`,
      'the image /dev/zero is a character device, not a regular file: it is not read',
      `the image ${zero} is a character device, not a regular file: it is not read`,
      'cannot decode image: the image is 16000x16000 pixels, more than capture.maxFramePixels (50000000)',
      'good',
    ]);
  });

  it('enroll lists a FIFO and a symlink to /dev/zero in a label folder as skipped, with the reason', async () => {
    const { dir, images, config } = await setup();
    const { fifo, zero } = hostile(join(images, 'good'));
    void dir;
    const result = await runCommand(['enroll', images, '--config', config, '--json']);
    expect(result.code).toBe(1);
    const doc = JSON.parse(result.stdout) as { added: number; skipped: { path: string; reason: string }[] };
    expect(doc.added).toBe(8);
    expect(doc.skipped).toEqual([
      { path: join(images, 'good', 'bomb.png'), reason: 'cannot decode image: the image is 16000x16000 pixels, more than capture.maxFramePixels (50000000)' },
      { path: fifo, reason: `the image ${fifo} is a FIFO (named pipe), not a regular file: it is not read` },
      { path: zero, reason: `the image ${zero} is a character device, not a regular file: it is not read` },
    ]);
  });

  it('run refuses a model.onnx that is a FIFO, and a configuration file that is /dev/zero, with a message', async () => {
    const { dir, config } = await setup();
    const model = join(dir, 'model');
    cpSync(tinyModel, model, { recursive: true });
    execFileSync('rm', [join(model, 'model.onnx')]);
    execFileSync('mkfifo', [join(model, 'model.onnx')]);
    writeFileSync(config, readFileSync(config, 'utf8').replace(tinyModel, model));
    const fifoModel = await runCommand(['run', '--config', config]);
    expect(fifoModel.code).toBe(1);
    expect(fifoModel.stderr).toContain(`linewatch: the model file ${join(model, 'model.onnx')} is a FIFO (named pipe), not a regular file: it is not read`);
    const zeroConfig = await runCommand(['run', '--config', '/dev/zero']);
    expect(zeroConfig.code).toBe(1);
    expect(zeroConfig.stderr).toContain('linewatch: the configuration file /dev/zero is a character device, not a regular file: it is not read\n  fix: ');
  });
});

describe('hostile files in the replay folder of a running daemon', () => {
  it('drops and counts a FIFO, a symlink to /dev/zero, an oversized file and a PNG bomb, decides the good frames, and exits on SIGTERM', async () => {
    const { dir, images } = await setup();
    const frames = join(dir, 'frames');
    mkdirSync(frames);
    copyFileSync(join(images, 'good', 'good-0.png'), join(frames, '1.png'));
    hostile(frames);
    writeFileSync(join(frames, 'huge.jpg'), Buffer.alloc(2_000_000));
    const { config } = await setup({ capture: { replay: { folder: frames, fps: 50 }, maxFrameBytes: 1_000_000 }, enroll: { folder: images } });
    const daemon = runLinewatch(['run', '--config', config]);
    running.push(daemon);
    const ready = await daemon.waitForLog((l) => l.msg === 'running');
    type Status = { state: string; capture: { framesDropped: number; lastError: string | null }; decisions: { classified: number; invalidFrames: number } };
    let status!: Status;
    await until(async () => {
      status = (await (await fetch(String(ready.status))).json()) as Status;
      return status.capture.framesDropped >= 6 && status.decisions.invalidFrames >= 2 && status.decisions.classified >= 2;
    }, 'two passes of the folder: 3 files dropped, the bomb invalid and the good frame decided in each (status capture.framesDropped >= 6)');
    expect(status.state).toBe('running');
    const dropped = daemon.logs.filter((l) => l.msg === 'frame dropped').map((l) => String(l.reason));
    expect(dropped).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/fifo\.jpg is a FIFO \(named pipe\), not a regular file/),
        expect.stringMatching(/huge\.jpg is 2000000 bytes, more than the 1000000 bytes allowed/),
        expect.stringMatching(/zero\.jpg is a character device, not a regular file/),
      ]),
    );
    // Before, a read blocked on the FIFO held a thread of libuv's pool, and the process never exited.
    expect(await daemon.stop()).toBe(0);
    expect(daemon.logs.some((l) => l.msg === 'stopped')).toBe(true);
  });
});
