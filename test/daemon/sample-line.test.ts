import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { collectMessages, startMosquitto } from '../helpers/mosquitto.js';
import { repoRoot, runCommand, runLinewatch, tempDir, writeConfig } from '../helpers/daemon.js';

const sampleConfig = join(repoRoot, 'config/sample.yml');
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

describe('the bundled sample line (npm start)', () => {
  it('enrolls the demo references and turns the replayed defects into MQTT events', async () => {
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const sub = await collectMessages(broker.url, 'linewatch/demo/line-1/cam-1/#');
    cleanups.push(() => sub.close());
    // The shipped config as it is, with a private state folder, a free status port, one pass at full speed.
    const daemon = runLinewatch(['run', '--config', sampleConfig], {
      LINEWATCH_STATE_DIR: tempDir(),
      LINEWATCH_HTTP_PORT: '0',
      LINEWATCH_CAPTURE_REPLAY_FPS: '0',
      LINEWATCH_CAPTURE_REPLAY_LOOP: 'false',
      LINEWATCH_MQTT_URL: broker.url,
      LINEWATCH_LOG_FORMAT: 'json',
    });
    cleanups.push(() => daemon.stop('SIGKILL'));
    expect(await daemon.waitForExit()).toBe(0);

    const enrolled = daemon.logs.find((l) => l.msg === 'enrolled the starting references');
    expect(enrolled).toMatchObject({ added: 200, skipped: 0 });
    const anomalies = daemon.logs.filter((l) => l.msg === 'anomaly');
    const events = sub.messages.filter((m) => m.topic.endsWith('/events')).map((m) => JSON.parse(m.payload) as { id: string; frame: { origin: string } });
    expect(new Set(events.map((e) => e.id))).toEqual(new Set(anomalies.map((l) => String(l.event))));
    expect(sub.messages.some((m) => m.topic.endsWith('/available') && m.payload === 'online')).toBe(true);

    // Frame names carry the truth (000123-sandal.jpg): most flagged frames are real defects, most defects are flagged.
    const flagged = events.map((e) => e.frame.origin);
    const defects = imageNames(join(repoRoot, 'samples/line/frames')).filter((name) => !name.includes('-good.'));
    const truePositives = flagged.filter((name) => !name.includes('-good.')).length;
    expect(truePositives / flagged.length).toBeGreaterThan(0.5);
    expect(truePositives / defects.length).toBeGreaterThan(0.5);
  });
});

describe('parity: the daemon path reproduces the training report', () => {
  const reportPath = join(repoRoot, 'training/report/report.json');
  type Figures = Record<string, { f1: number; auroc: number }>;
  const report = existsSync(reportPath) ? (JSON.parse(readFileSync(reportPath, 'utf8')) as { parity: Figures; parityPyTorch: Figures }) : null;

  it('has a report for the shipped bundles', () => {
    expect(report?.parity, `${reportPath} with a "parity" section`).toBeTruthy();
    expect(Object.keys(report!.parity).sort()).toEqual(['default-fp32', 'default-int8']);
  });

  for (const bundle of ['default-fp32', 'default-int8']) {
    it(`linewatch eval with ${bundle} matches the Python report within 0.01 F1`, async () => {
      const dir = tempDir();
      const config = writeConfig(dir, { stateDir: join(dir, 'state'), model: join(repoRoot, 'models', bundle) });
      expect((await runCommand(['enroll', join(repoRoot, 'samples/line/references'), '--config', config])).code).toBe(0);
      const result = await runCommand(['eval', join(repoRoot, 'samples/line/test'), '--config', config, '--json']);
      expect(result.code, result.stderr).toBe(0);
      const figures = (JSON.parse(result.stdout) as { binary: { f1: number; auroc: number } }).binary;
      // FP32 is held to PyTorch's own figures: export, onnxruntime and sharp must not change them.
      // PyTorch's INT8 kernels round differently from onnxruntime's (about 0.02 F1 here), so the INT8
      // bundle is held to the Python kNN over onnxruntime's vectors: sharp and the daemon's kNN must match.
      const expected = (bundle === 'default-fp32' ? report!.parityPyTorch : report!.parity)[bundle]!;
      expect(Math.abs(figures.f1 - expected.f1)).toBeLessThanOrEqual(0.01);
      expect(Math.abs(figures.auroc - expected.auroc)).toBeLessThanOrEqual(0.01);
    });
  }
});

describe('the threshold on the shipped bundle', () => {
  it('trades precision for recall on samples/line/test: raising it lowers recall and raises precision', async () => {
    const bundle = join(repoRoot, 'models/default-fp32');
    const calibrated = (JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8')) as { classifier: { threshold: number } }).classifier.threshold;
    const stateDir = join(tempDir(), 'state');
    const configAt = (threshold?: number) => writeConfig(tempDir(), { stateDir, model: bundle, ...(threshold === undefined ? {} : { knn: { threshold } }) });
    expect((await runCommand(['enroll', join(repoRoot, 'samples/line/references'), '--config', configAt()])).code).toBe(0);
    type Evaluation = { binary: { precision: number; recall: number }; precisionRecall: unknown[] };
    const evaluations: Evaluation[] = [];
    // Steps of 0.05 around the calibrated threshold, where a technician turns it. Farther up the
    // curve is not monotone on these 1,000 items: above 0.51 about ten good items that score high keep
    // precision at 0.82-0.84 while recall falls (0.826 at 0.51, 0.820 at 0.61), as precision-recall
    // curves do where few decisions are left.
    for (const threshold of [calibrated - 0.05, calibrated, calibrated + 0.05]) {
      const result = await runCommand(['eval', join(repoRoot, 'samples/line/test'), '--config', configAt(threshold), '--json']);
      expect(result.code, result.stderr).toBe(0);
      evaluations.push(JSON.parse(result.stdout) as Evaluation);
    }
    const [low, middle, high] = evaluations.map((e) => e.binary);
    expect(middle!.recall).toBeLessThan(low!.recall);
    expect(high!.recall).toBeLessThan(middle!.recall);
    expect(middle!.precision).toBeGreaterThan(low!.precision);
    expect(high!.precision).toBeGreaterThan(middle!.precision);
    // A score that took two values (0 and 1) gave a curve of two points and a threshold that did nothing.
    expect(evaluations[0]!.precisionRecall.length, 'points of the precision-recall curve').toBeGreaterThan(100);
  }, 300_000);
});

function imageNames(dir: string): string[] {
  return readdirSync(dir).filter((name) => /\.(jpe?g|png)$/i.test(name));
}
