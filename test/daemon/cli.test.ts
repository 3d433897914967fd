import { chmodSync, copyFileSync, cpSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/mosquitto.js';
import { makeLabeledImages, runCommand, runLinewatch, tempDir, tinyModel, writeConfig, type RunningLinewatch } from '../helpers/daemon.js';
import { until } from '../ops/helpers.js';

const running: RunningLinewatch[] = [];
afterEach(async () => {
  for (const run of running.splice(0)) await run.stop('SIGKILL');
});

async function setup(extra: Record<string, unknown> = {}) {
  const dir = tempDir();
  const images = await makeLabeledImages(join(dir, 'images'));
  const config = writeConfig(dir, {
    stateDir: join(dir, 'state'),
    model: tinyModel,
    mqtt: { url: `mqtt://127.0.0.1:${await freePort()}` },
    http: { port: 0 },
    log: { format: 'json' },
    ...extra,
  });
  return { dir, images, config };
}

/** No stack trace for a user's mistake: the message and the fix, nothing else. */
function expectUserMessage(stderr: string, ...parts: string[]) {
  for (const part of parts) expect(stderr).toContain(part);
  expect(stderr).toContain('fix:');
  expect(stderr).not.toMatch(/^\s+at /m);
}

describe('linewatch CLI', () => {
  it('enrolls a labeled folder once, classifies images, and reports unreadable ones', async () => {
    const { dir, images, config } = await setup();
    const first = await runCommand(['enroll', images, '--config', config, '--json']);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ added: 8, alreadyEnrolled: 0, byLabel: { good: 4, scratch: 4 }, references: { total: 8 } });
    const again = JSON.parse((await runCommand(['enroll', images, '--config', config, '--json'])).stdout);
    expect(again).toMatchObject({ added: 0, alreadyEnrolled: 8, references: { total: 8 } });

    const corrupt = join(dir, 'corrupt.jpg');
    writeFileSync(corrupt, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
    const classified = await runCommand(['classify', join(images, 'scratch', 'scratch-0.png'), corrupt, '--config', config, '--json']);
    expect(classified.code).toBe(1);
    const doc = JSON.parse(classified.stdout) as { results: { image: string; anomaly?: boolean; label?: string; score?: number; error?: string; neighbours?: unknown[] }[] };
    expect(doc.results[0]).toMatchObject({ anomaly: true, label: 'scratch' });
    expect(doc.results[0]!.neighbours).toHaveLength(3); // k from the tiny model's manifest
    expect(doc.results[1]!.error).toContain('cannot decode image');
  });

  it('evaluates a labeled folder: binary figures, per-label figures, confusion matrix and a PNG chart', async () => {
    const { dir, images, config } = await setup();
    expect((await runCommand(['enroll', images, '--config', config])).code).toBe(0);
    const chart = join(dir, 'eval.png');
    const result = await runCommand(['eval', images, '--config', config, '--json', '--chart', chart]);
    expect(result.code).toBe(0);
    const doc = JSON.parse(result.stdout);
    for (const key of ['precision', 'recall', 'f1', 'auroc']) expect(typeof doc.binary[key]).toBe('number');
    // The references themselves are the test set: each is its own nearest neighbour.
    expect(doc.binary).toMatchObject({ truePositives: 4, trueNegatives: 4, f1: 1, auroc: 1 });
    expect(doc.confusion).toEqual({ labels: ['good', 'scratch'], counts: [[4, 0], [0, 4]] });
    expect((await sharp(readFileSync(chart)).metadata()).format).toBe('png');
  });

  it('refuses a model whose file does not match its manifest, with the reason and no stack trace', async () => {
    const { dir, config } = await setup();
    const model = join(dir, 'model');
    cpSync(tinyModel, model, { recursive: true });
    writeFileSync(join(model, 'model.onnx'), Buffer.concat([readFileSync(join(model, 'model.onnx')), Buffer.from([0])]));
    writeFileSync(config, readFileSync(config, 'utf8').replace(tinyModel, model));
    const result = await runCommand(['run', '--config', config]);
    expect(result.code).toBe(1);
    expectUserMessage(result.stderr, 'sha256', 'does not match');
  });

  it('refuses a bad config naming the key, and an unknown command with the usage', async () => {
    const { config } = await setup();
    writeFileSync(config, readFileSync(config, 'utf8') + 'capture:\n  source: webcam\n');
    const result = await runCommand(['run', '--config', config]);
    expect(result.code).toBe(1);
    expectUserMessage(result.stderr, 'capture.source', '"webcam"');
    const unknown = await runCommand(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('Usage: linewatch <command>');
  });

  it("counts labels named like Object's properties (__proto__, constructor, hasOwnProperty) as any other, and refuses unusable ones", async () => {
    const { dir, images } = await setup();
    // scratch/ becomes __proto__/; constructor/ and hasOwnProperty/ hold copies of good items.
    renameSync(join(images, 'scratch'), join(images, '__proto__'));
    for (const [label, source] of [['constructor', 'good-0.png'], ['hasOwnProperty', 'good-1.png']] as const) {
      mkdirSync(join(images, label));
      copyFileSync(join(images, 'good', source), join(images, label, source));
    }
    const { config } = await setup({ capture: { replay: { folder: join(images, '__proto__'), fps: 20 } }, knn: { goodLabel: ' good ' } });
    const enrolled = await runCommand(['enroll', images, '--config', config, '--json']);
    expect(enrolled.code, enrolled.stderr).toBe(0);
    // Entries, not an object literal: in a literal `__proto__: 4` would set the prototype, not a key.
    const counts = [['__proto__', 4], ['constructor', 1], ['good', 4], ['hasOwnProperty', 1]];
    const doc = JSON.parse(enrolled.stdout) as { byLabel: Record<string, number>; references: { byLabel: Record<string, number> } };
    expect(Object.entries(doc.byLabel).sort()).toEqual(counts);
    expect(Object.entries(doc.references.byLabel).sort()).toEqual(counts);

    const daemon = runLinewatch(['run', '--config', config]);
    running.push(daemon);
    const statusUrl = String((await daemon.waitForLog((l) => l.msg === 'running')).status);
    let status!: { decisions: { anomaliesByLabel: Record<string, number> }; references: { byLabel: Record<string, number> } };
    await until(async () => {
      status = (await (await fetch(statusUrl)).json()) as typeof status;
      return Object.hasOwn(status.decisions.anomaliesByLabel, '__proto__') && status.decisions.anomaliesByLabel['__proto__']! >= 2;
    }, 'two anomalies counted under the label __proto__ in status decisions.anomaliesByLabel');
    expect(Object.keys(status.decisions.anomaliesByLabel)).toEqual(['__proto__']);
    expect(Object.entries(status.references.byLabel).sort()).toEqual(counts);
    const metrics = await (await fetch(statusUrl.replace(/\/status$/, '/metrics'))).text();
    expect(metrics).toMatch(/^linewatch_references\{label="constructor"\} 1$/m);
    expect(await daemon.stop()).toBe(0);

    // Where a label enters from the user's files: --label and subfolder names.
    const byOption = await runCommand(['enroll', join(images, 'good'), '--label', '../etc', '--config', config]);
    expect(byOption.code).toBe(1);
    expectUserMessage(byOption.stderr, '--label: "../etc" is not a usable label');
    mkdirSync(join(images, 'bad:name'));
    const bySubfolder = await runCommand(['enroll', images, '--config', config]);
    expect(bySubfolder.code).toBe(1);
    expectUserMessage(bySubfolder.stderr, `the subfolder ${join(images, 'bad:name')}: "bad:name" is not a usable label`, 'rename the folder');
  });

  it('refuses config mistakes that used to be stack traces (exit 70) with a message and exit 1', async () => {
    const { dir, config } = await setup();
    const base = readFileSync(config, 'utf8');
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]', ...[1, 2, 3, 4, 5, 6, 7, 8].map((i) => `l${i}: &l${i} [${Array(9).fill(i === 1 ? '*a' : `*l${i - 1}`).join(', ')}]`)].join('\n');
    const stateFile = join(dir, 'state-file');
    writeFileSync(stateFile, 'a file, not a folder');
    const cases: [string, string[]][] = [
      [`${bomb}\n`, ['uses more YAML aliases']],
      [base.replace(/^stateDir: .*$/m, `stateDir: ${stateFile}`), [`cannot make the folder ${stateFile}: a file is in the way`, 'point stateDir at a folder']],
      [`${base}inference:\n  maxBatch: 100000000\n`, ['inference.maxBatch: a whole number from 1 to 256 (got 100000000)']],
      [`${base.replace(/^mqtt:\n/m, `mqtt:\n  topicRoot: ${'t'.repeat(120_000)}\n`)}`, ['mqtt.topicRoot: at most 1024 characters']],
      [`${base.replace(/^mqtt:\n/m, 'mqtt:\n  statsIntervalS: 9999999\n')}`, ['mqtt.statsIntervalS: a whole number from 1 to 86400']],
    ];
    for (const [text, parts] of cases) {
      writeFileSync(config, text);
      const result = await runCommand(['run', '--config', config]);
      expect(result.code, result.stderr).toBe(1);
      expectUserMessage(result.stderr, ...parts);
    }
  });

  it('keeps its state private with umask 022: folders 0750, database files 0640, the token 0600; warns of an open state folder', async () => {
    const { dir, images, config } = await setup();
    writeFileSync(config, `${readFileSync(config, 'utf8')}capture:\n  replay:\n    folder: ${join(images, 'good')}\n    fps: 20\n`);
    const state = join(dir, 'state');
    const modeOf = (path: string) => (statSync(path).mode & 0o777).toString(8);
    const saved = process.umask(0o022); // the child inherits it
    try {
      const daemon = runLinewatch(['run', '--config', config]);
      running.push(daemon);
      await daemon.waitForLog((l) => l.msg === 'running');
      const paths = ['', 'inbox', 'inbox/done', 'linewatch.db', 'linewatch.db-wal', 'linewatch.db-shm', 'control-token'];
      expect(Object.fromEntries(paths.map((p) => [p, modeOf(join(state, p))]))).toEqual({
        '': '750',
        inbox: '750',
        'inbox/done': '750',
        'linewatch.db': '640',
        'linewatch.db-wal': '640',
        'linewatch.db-shm': '640',
        'control-token': '600',
      });
      expect(daemon.logs.some((l) => l.msg.startsWith('the state folder is open'))).toBe(false);
      expect(await daemon.stop()).toBe(0);

      // A folder opened by hand is the user's to close: said at start, with the fix.
      chmodSync(state, 0o755);
      const again = runLinewatch(['run', '--config', config]);
      running.push(again);
      const warning = await again.waitForLog((l) => l.msg.startsWith('the state folder is open to other users'));
      expect(warning).toMatchObject({ level: 'warn', stateDir: state, mode: '0755', fix: `chmod 750 ${state}` });
      expect(await again.stop()).toBe(0);
    } finally {
      process.umask(saved);
    }
  });

  it('runs with an empty reference store and says it cannot classify yet; skips and counts corrupt frames', async () => {
    const { dir, images } = await setup();
    const frames = join(dir, 'frames');
    mkdirSync(frames);
    copyFileSync(join(images, 'good', 'good-0.png'), join(frames, '1.png'));
    writeFileSync(join(frames, '2.jpg'), Buffer.from('not a jpeg at all'));
    copyFileSync(join(images, 'scratch', 'scratch-0.png'), join(frames, '3.png'));
    const { config } = await setup({ capture: { replay: { folder: frames, fps: 20 } } });

    const daemon = runLinewatch(['run', '--config', config]);
    running.push(daemon);
    const ready = await daemon.waitForLog((l) => l.msg === 'running');
    expect(ready.problem).toContain('no references enrolled yet');
    await daemon.waitForLog((l) => l.msg === 'frame skipped: cannot decode it');
    const statusUrl = String(ready.status);
    let status!: { problems: string[]; decisions: { unclassified: number; invalidFrames: number }; state: string };
    await until(async () => {
      status = (await (await fetch(statusUrl)).json()) as typeof status;
      return status.decisions.unclassified >= 2;
    }, 'two frames held back for want of references (status decisions.unclassified >= 2)');
    expect(status.state).toBe('running');
    expect(status.problems.join('\n')).toContain('run linewatch enroll');
    expect(status.decisions.invalidFrames).toBeGreaterThanOrEqual(1);
    // The same losses as Prometheus counts them, by reason: each between the status read before and after.
    const metrics = await (await fetch(statusUrl.replace(/\/status$/, '/metrics'))).text();
    const after = (await (await fetch(statusUrl)).json()) as typeof status;
    const dropped = (reason: string) => Number(metrics.match(new RegExp(`^linewatch_frames_dropped_total\\{reason="${reason}",camera="[^"]+"\\} (\\d+)$`, 'm'))?.[1] ?? NaN);
    expect(dropped('invalid')).toBeGreaterThanOrEqual(status.decisions.invalidFrames);
    expect(dropped('invalid')).toBeLessThanOrEqual(after.decisions.invalidFrames);
    expect(dropped('no_references')).toBeGreaterThanOrEqual(status.decisions.unclassified);
    expect(dropped('no_references')).toBeLessThanOrEqual(after.decisions.unclassified);
    expect([dropped('capture'), dropped('inference_failed')]).toEqual([0, 0]);
    expect(await daemon.stop()).toBe(0);
  });
});
