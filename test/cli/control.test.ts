import { copyFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair, signBundle } from '../../dist/inference/index.js';
import { freePort } from '../helpers/mosquitto.js';
import { constantVector } from '../models/bundles.js';
import { makeLabeledImages, runCommand, runLinewatch, tempDir, tinyModel, writeConfig, type LogLine, type RunningLinewatch } from '../helpers/daemon.js';

/** One line's state folder, config and daemon, shared by the steps below (they run in order). */
let dir: string;
let images: string;
let config: string;
let url: string;
let keysDir: string;
let daemon: RunningLinewatch | undefined;

beforeAll(async () => {
  dir = tempDir('linewatch-control-');
  images = await makeLabeledImages(join(dir, 'images'), 3);
  const frames = join(dir, 'frames');
  mkdirSync(frames);
  copyFileSync(join(images, 'good', 'good-0.png'), join(frames, 'good-0.png'));
  copyFileSync(join(images, 'scratch', 'scratch-0.png'), join(frames, 'scratch-0.png'));
  keysDir = join(dir, 'trusted-keys');
  mkdirSync(keysDir);
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  config = writeConfig(dir, {
    stateDir: join(dir, 'state'),
    model: tinyModel,
    capture: { source: 'replay', replay: { folder: frames, fps: 10, loop: true } },
    enroll: { folder: images },
    // Every frame is an anomaly, so each one leaves an event (and its image) to label.
    knn: { threshold: 0 },
    models: { trustedKeysDir: keysDir },
    mqtt: { enabled: false },
    http: { port },
    log: { format: 'json' },
  });
});

// A failed step must not leave its daemon answering the next test's commands.
afterEach(async () => {
  await daemon?.stop('SIGKILL');
  daemon = undefined;
});

async function start(): Promise<RunningLinewatch> {
  daemon = runLinewatch(['run', '--config', config]);
  await daemon.waitForLog((l) => l.msg === 'running');
  return daemon;
}

const cli = (...args: string[]) => runCommand([...args, '--config', config]);
const json = async (...args: string[]) => {
  const result = await cli(...args, '--json');
  return { code: result.code, doc: JSON.parse(result.stdout) as { running: boolean; ok: boolean; result: any; error: any }, stderr: result.stderr };
};
const liveStatus = async () => (await (await fetch(`${url}/status`)).json()) as { classifier: { k: number; unknownDistance: number; overrides: Record<string, number> }; references: { total: number } };

/** No stack trace for a user's mistake: the message and the fix. */
function expectUserMessage(stderr: string, ...parts: string[]) {
  for (const part of parts) expect(stderr).toContain(part);
  expect(stderr).toContain('fix:');
  expect(stderr).not.toMatch(/^\s+at /m);
}

describe('linewatch control commands', () => {
  it('act on a running daemon at once: token, classifier, label, references, enroll, model push/list/rollback', async () => {
    const running = await start();

    const token = await cli('token');
    expect(token.code).toBe(0);
    expect(token.stdout.trim()).toBe(readFileSync(join(dir, 'state', 'control-token'), 'utf8').trim());

    const set = await cli('classifier', 'set', '--k', '2');
    expect(set.code).toBe(0);
    expect(set.stdout).toContain('classifier in force: k 2');
    expect(set.stdout).toContain('overriding the configuration file: k 2');
    expect(set.stdout).not.toContain('not running');
    expect((await liveStatus()).classifier).toMatchObject({ k: 2, overrides: { k: 2 } });

    // Label a good frame's event "dent": that frame's next decision carries the new label.
    const seen = await running.waitForLog((l) => l.msg === 'anomaly' && l.frame === 'good-0.png');
    const labelled = await cli('label', String(seen.event), 'dent');
    expect(labelled.code, labelled.stderr).toBe(0);
    const referenceId = /reference #(\d+)/.exec(labelled.stdout)?.[1];
    expect(referenceId).toBeDefined();
    const after = running.logs.length;
    const next = await running.waitForLog((l: LogLine, all) => all.indexOf(l) >= after && l.msg === 'anomaly' && l.frame === 'good-0.png');
    expect(next.label).toBe('dent');

    // The daemon's refusals: the reason (and the fix), exit 1.
    const [badId, noEvent] = await Promise.all([cli('label', 'not-an-id', 'dent'), cli('label', '0190a000-0000-7000-8000-000000000000', 'dent')]);
    expect(badId.code).toBe(1);
    expect(badId.stderr).toContain('event: an event id');
    expect(noEvent.code).toBe(1);
    expectUserMessage(noEvent.stderr, 'no image is kept for event 0190a000-0000-7000-8000-000000000000');

    const removed = await json('references', 'remove', referenceId!);
    expect(removed).toMatchObject({ code: 0, doc: { running: true, ok: true, result: { removed: 1 } } });

    // Enrolling through the daemon: the new references count without a restart.
    const before = (await liveStatus()).references.total;
    const extra = join(dir, 'extra');
    mkdirSync(extra);
    await sharp({ create: { width: 28, height: 28, channels: 3, background: { r: 40, g: 200, b: 90 } } }).png().toFile(join(extra, 'green.png'));
    const enrolled = await cli('enroll', extra, '--label', 'stain');
    expect(enrolled.code, enrolled.stderr).toBe(0);
    expect(enrolled.stdout).toContain('the running linewatch decides with them already');
    expect((await liveStatus()).references.total).toBe(before + 1);

    // A signed copy of the fixture with a new version passes the gate (same vectors) and is swapped in.
    const keys = tempDir('linewatch-keys-');
    const key = await generateKeyPair(keys, 'line');
    copyFileSync(key.publicKeyPath, join(keysDir, 'line.pub'));
    const bundle = join(dir, 'bundle-2');
    cpSync(tinyModel, bundle, { recursive: true });
    const manifest = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8'));
    writeFileSync(join(bundle, 'manifest.json'), JSON.stringify({ ...manifest, version: '2' }, null, 2));
    await signBundle(bundle, key.privateKeyPath);
    const pushed = await cli('model', 'push', bundle);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout).toContain('model tiny-test@2 is active (was tiny-test@1)');
    expect(pushed.stdout).toMatch(/accuracy gate passed: .*\n\s+active\s+tiny-test@1: F1 .* AUROC .*\n\s+candidate tiny-test@2: F1/);

    // A model that gives every image the same vector is worse than the fixture (with knn.threshold 0 every
    // model has the same F1 here, so AUROC tells them apart): refused, with both models' figures.
    const worse = await constantVector(tinyModel, '9.9.9-constant');
    await signBundle(worse, key.privateKeyPath);
    const gated = await cli('model', 'push', worse);
    expect(gated.code).toBe(1);
    expectUserMessage(gated.stderr, 'the accuracy gate refused tiny-test@9.9.9-constant', '--force');
    expect(gated.stderr).toMatch(/\n\s+active\s+tiny-test@2: F1 [\d.]+\s+AUROC [\d.]+.*\n\s+candidate tiny-test@9\.9\.9-constant: F1 [\d.]+\s+AUROC [\d.]+/);

    const list = await json('model', 'list');
    expect(list.doc.result).toMatchObject({ active: 'tiny-test@2', previous: 'tiny-test@1' });
    expect(list.doc.result.versions.map((v: { key: string }) => v.key).sort()).toEqual(['tiny-test@1', 'tiny-test@2']);

    const back = await cli('model', 'rollback');
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toContain('model tiny-test@1 is active (was tiny-test@2)');

    // Someone who cannot read the token is told to run it as root, not offered a database write.
    const stranger = join(dir, 'stranger.yml');
    writeFileSync(stranger, readFileSync(config, 'utf8') + `control:\n  tokenFile: ${join(dir, 'nowhere', 'token')}\n`);
    const refused = await runCommand(['classifier', 'set', '--k', '4', '--config', stranger]);
    expect(refused.code).toBe(1);
    expectUserMessage(refused.stderr, 'linewatch is running', 'no control token', 'sudo linewatch classifier set');

    expect(await running.stop()).toBe(0);
  }, 240_000);

  it('change the database of a stopped daemon, in force at its next start', async () => {
    const set = await cli('classifier', 'set', '--k', 'default', '--unknown-distance', '0.7');
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain('overriding the configuration file: unknownDistance 0.7');
    expect(set.stdout).toContain('linewatch is not running: changed in its database, in force at its next start');

    const list = await cli('model', 'list');
    expect(list.stdout).toMatch(/^active: tiny-test@1$/m);
    expect(list.stdout).toMatch(/^previous \(model rollback brings it back\): tiny-test@2$/m);
    expect(list.stdout).toContain('linewatch is not running: read from its database');

    // Offline too, a refused push says why and exits 1 (here, a signature file that signs nothing).
    const unsigned = join(dir, 'bundle-3');
    cpSync(join(dir, 'bundle-2'), unsigned, { recursive: true });
    writeFileSync(join(unsigned, 'signature.json'), '{}');
    const refused = await cli('model', 'push', unsigned);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^linewatch: .*signature/m);
    expect(refused.stderr).not.toMatch(/^\s+at /m);

    const running = await start();
    expect((await liveStatus()).classifier).toMatchObject({ k: 3, unknownDistance: 0.7, overrides: { unknownDistance: 0.7 } });
    await running.stop();
  }, 120_000);

  it('says what is wrong with a command line, without a stack', async () => {
    const [missing, notNumber, notId, noBundle, misspelt] = await Promise.all([
      cli('label', '0190a000-0000-7000-8000-000000000000'),
      cli('classifier', 'set', '--threshold', 'high'),
      cli('references', 'remove', 'seven'),
      cli('model', 'push', join(dir, 'no-such-bundle')),
      cli('model', 'push', '--frce'),
    ]);
    for (const result of [missing, notNumber, notId, noBundle]) expect(result.code).toBe(1);
    expectUserMessage(missing.stderr, 'label takes an event id and a label');
    expectUserMessage(notNumber.stderr, '--threshold must be a number or "default"');
    expectUserMessage(notId.stderr, '"seven" is not a reference id');
    expectUserMessage(noBundle.stderr, 'cannot read the bundle');
    expect(misspelt.code).toBe(2);
    expect(misspelt.stderr).toContain("Unknown option '--frce'");
    expect(misspelt.stderr).not.toMatch(/^\s+at /m);
  });
});
