import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Preprocessor } from '../../dist/preprocess/tensor.js';
import { repoRoot } from '../helpers/daemon.js';
import { daemonEval, expectFinished, ownFolderArgs, plantFolders, python, readReport, runPipeline } from '../helpers/training.js';

interface Row {
  model: string;
  labels: number;
  f1: number;
  recall: number;
  calibrationF1?: number;
  classifier?: Record<string, unknown>;
  recallByLabel: Record<string, number>;
  degenerate?: string | null;
}
interface Report {
  data: { labelSizes: number[]; testLabels: { missingFromTest: string[]; newInTest: string[] } };
  bundle: { model: string; labels: number; why: string; margin: number };
  results: Row[];
  targets: Record<string, { met: boolean | null; detail: string }>;
  parity: Record<string, { f1: number; auroc: number }>;
  paritySet: { referenceCount: number };
}

/** Quick training settings: these tests check what the pipeline does with odd folders, not how well it learns. */
const quick = ['--ae-epochs', '1', '--triplet-steps', '10,20'];

/**
 * training.pipeline on a plant's own folders (training/README.md "A plant's own images"), each run
 * on small generated folders: the pipeline must hold up on what a new user gives it.
 */
describe('training pipeline on a plant\'s own folders', () => {
  it('refuses unusable folders before any training, with one message and its fix per problem and no stack trace', async () => {
    const dir = plantFolders({ labeled: { scratch: 3, hole: 1 }, test: { scratch: 2 } });
    const labeled = join(dir, 'labeled');
    mkdirSync(join(labeled, 'dent'));
    writeFileSync(join(labeled, 'scratch', 'notes.txt'), 'not an image');
    writeFileSync(join(labeled, 'scratch', 'cut.png'), readFileSync(join(labeled, 'scratch', 'scratch-0000.png')).subarray(0, 100));
    copyFileSync(join(labeled, 'scratch', 'scratch-0001.png'), join(labeled, 'loose.png'));
    writeFileSync(join(labeled, '.DS_Store'), 'hidden files are ignored');
    const out = join(dir, 'out');
    const run = await runPipeline(['--unlabeled', join(dir, 'no-such-folder'), '--labeled', labeled, '--test', join(dir, 'test'), '--out', out, ...quick]);

    expect(run.status, run.stderr).toBe(1);
    expect(run.stderr).not.toContain('Traceback');
    const expected = [
      /--unlabeled \S+no-such-folder does not exist\n {2}fix: /,
      /--labeled: 1 file\(s\) lie directly in the folder, outside a label subfolder: \S+loose\.png\n {2}fix: /,
      /--labeled: 1 file\(s\) are not \.png, \.jpg or \.jpeg files: \S+notes\.txt\n {2}fix: /,
      /--labeled: 1 file\(s\) cannot be decoded \(corrupt or truncated\): \S+cut\.png\n {2}fix: /,
      /--labeled \S+ has no "good" subfolder .*\n {2}fix: /,
      /--labeled: label "dent" has 0 image\(s\).*\n {2}fix: /,
      /--labeled: label "hole" has 1 image\(s\).*\n {2}fix: /,
      /--test \S+ has no "good" images.*\n {2}fix: /,
    ];
    for (const message of expected) expect(run.stderr).toMatch(message);
    expect(run.stderr).toContain(`${expected.length} problem(s) with the inputs; nothing was trained`);
    expect(run.stderr).not.toContain('.DS_Store');
    expect(run.stdout, 'training started before the inputs were checked').not.toContain('epoch');
    expect(existsSync(out)).toBe(false);
  }, 120_000);

  it('refuses, before training, a label size whose draw cannot hold both good and defect images', async () => {
    const dir = plantFolders({ labeled: { good: 40, scratch: 2, hole: 2 }, test: { good: 5, scratch: 2 } });
    // One labeled image is either one good image or no good image at all.
    const run = await runPipeline([...ownFolderArgs(dir), '--out', join(dir, 'out'), '--label-sizes', '1,44', '--bundle-labels', '44', ...quick]);
    expect(run.status, run.stderr).toBe(1);
    expect(run.stderr).not.toContain('Traceback');
    expect(run.stderr).toMatch(/the 1 labeled images drawn for --label-sizes 1 hold .*\n {2}fix: drop 1 from --label-sizes/);
    expect(run.stderr).toContain('1 problem(s) with the inputs; nothing was trained');
    expect(run.stdout, 'training started before the draws were checked').not.toContain('epoch');
  }, 120_000);

  it('refuses a negative --pull weight before reading any folder', async () => {
    const dir = plantFolders({ labeled: { good: 40, scratch: 2, hole: 2 }, test: { good: 5, scratch: 2 } });
    const run = await runPipeline([...ownFolderArgs(dir), '--out', join(dir, 'out'), '--pull', '-1', ...quick]);
    expect(run.status, run.stderr).toBe(1);
    expect(run.stderr).not.toContain('Traceback');
    expect(run.stderr).toMatch(/--pull must be a weight of 0 or more \(0 fine-tunes on the labels alone\), not -1/);
  }, 120_000);

  it('refuses relit copies without a pull to use them, before reading any folder', async () => {
    const dir = plantFolders({ labeled: { good: 40, scratch: 2, hole: 2 }, test: { good: 5, scratch: 2 } });
    const run = await runPipeline([...ownFolderArgs(dir), '--out', join(dir, 'out'), '--pull', '0', '--pull-lighting', '2', ...quick]);
    expect(run.status, run.stderr).toBe(1);
    expect(run.stderr).not.toContain('Traceback');
    expect(run.stderr).toContain('--pull-lighting 2: give a number of copies of 0 or more, with a --pull weight above 0');
  }, 120_000);

  it('reads gray and colour images of any size as the daemon does', async () => {
    const dir = plantFolders({ test: { good: 8, scratch: 4 } });
    // Files in mixed sizes (28x28 and larger), gray, RGB and RGBA, PNG and JPEG.
    const read = spawnSync(python, ['-c', [
      'import json, sys',
      'from pathlib import Path',
      'from PIL import Image',
      'from training.data import list_files, read_gray',
      'files = list_files(Path(sys.argv[1]))',
      'print(json.dumps({str(p): [Image.open(p).size[0], read_gray(p, 28).flatten().tolist()] for p in files}))',
    ].join('\n'), join(dir, 'test')], { cwd: repoRoot, encoding: 'utf8' });
    expect(read.status, read.stderr).toBe(0);
    const training = JSON.parse(read.stdout) as Record<string, [number, number[]]>;
    // mean 0 and std 1/255 give the daemon's 8-bit gray pixel values themselves.
    const daemon = new Preprocessor({ width: 28, height: 28, colour: 'gray', mean: [0], std: [1 / 255] });
    let modelSize = 0;
    for (const [file, [width, pixels]] of Object.entries(training)) {
      const tensor = daemon.createTensor();
      await daemon.toTensor(readFileSync(file), tensor);
      const diffs = pixels.map((v, i) => Math.abs(v - tensor[i]!));
      const mean = diffs.reduce((a, b) => a + b, 0) / diffs.length;
      // Same luma formula: images at the model size are identical. Resized ones go through two
      // lanczos3 implementations (Pillow, libvips) that differ by a fraction of a grey level.
      if (width === 28) {
        modelSize += 1;
        expect(Math.max(...diffs), `${file} (28x28) differs from the daemon's pixels`).toBeLessThan(1e-3);
      } else {
        expect(mean, `${file} (resized) differs from the daemon's pixels on average`).toBeLessThan(1);
      }
    }
    expect(modelSize).toBeGreaterThan(0);
  }, 120_000);

  it('trains on a tiny, imbalanced labeled folder whose test folder lacks some defect labels and has a new one', async () => {
    // The case in small: a few images per defect label, fewer labeled images than the
    // default --label-sizes 200,500,2000, and the test folder's defects differ from the labeled ones.
    const dir = plantFolders({ labeled: { good: 150, scratch: 4, hole: 3, stain: 2 }, test: { good: 40, scratch: 5, dent: 4 } });
    const out = join(dir, 'out');
    const run = await runPipeline([...ownFolderArgs(dir), '--out', out, ...quick, '--supervised-epochs', '20']);
    expectFinished(run, 'training.pipeline on tiny imbalanced folders');
    const report = readReport<Report>(join(out, 'report'));
    const md = readFileSync(join(out, 'report', 'report.md'), 'utf8');

    // Fewer labeled images than asked for: all of them, and the report says so.
    expect(report.data.labelSizes).toEqual([159]);
    expect(report.bundle.labels).toBe(159);
    expect(report.paritySet.referenceCount).toBe(159);
    expect(md).toContain('the labeled folder has only 159 images, so the sizes compared are 159');

    // Missing and new labels are named, not a KeyError.
    expect(report.data.testLabels).toEqual({ missingFromTest: ['hole', 'stain'], newInTest: ['dent'] });
    expect(md).toContain('labels with no test images (no recall figure): hole, stain');
    expect(md).toContain('test labels never labeled for training (found only as unlike every reference): dent');
    expect(md).toMatch(/\| model \| labels \| hole \| scratch \| stain \| dent \|/);

    // Class weights: 9 defects among 159 labels do not teach (unweighted, it calls every test item good) the supervised model to call everything good.
    const balanced = report.results.find((r) => r.model === 'supervised, balanced')!;
    expect(balanced.degenerate, 'the class-weighted supervised baseline collapsed on the imbalanced folder').toBeNull();
    expect(balanced.recall).toBeGreaterThan(0);
    expect(report.results.find((r) => r.model === 'supervised'), 'the row decided at the labels\' class mix').toBeDefined();

    // The bundle: fine-tuned+kNN unless another beats its out-of-fold F1 on the labels by more
    // than one anomaly's worth (1 / the 9 anomalies among the 159 labels), and it is what was exported.
    const candidates = report.results.filter((r) => r.labels === 159 && r.calibrationF1 !== undefined && r.calibrationF1 !== null);
    expect(candidates.map((r) => r.model).sort()).toEqual(['autoencoder+kNN', 'fine-tuned+kNN']);
    expect(report.bundle.margin).toBeCloseTo(1 / 9, 10);
    const [autoencoder, fineTuned] = ['autoencoder+kNN', 'fine-tuned+kNN'].map((m) => candidates.find((r) => r.model === m)!);
    const expected = autoencoder!.calibrationF1! > fineTuned!.calibrationF1! + report.bundle.margin ? autoencoder! : fineTuned!;
    expect(report.bundle.model).toBe(expected.model);
    expect(report.bundle.why).toContain('out-of-fold F1');
    expect(md).toContain(`Exported bundle: ${report.bundle.model} on 159 labels`);
    const manifest = JSON.parse(readFileSync(join(out, 'default-fp32', 'manifest.json'), 'utf8')) as { classifier: unknown };
    expect(manifest.classifier).toEqual(expected.classifier);

    // The daemon, reading the same mixed gray/colour, mixed-size files itself, agrees with the report.
    // FP32 only: this one-epoch model's distances are tiny (unknownDistance about 1e-4), so INT8
    // rounding on top of the resized pixels' fraction of a grey level flips one of these 49 items;
    // INT8 parity is checked by the smoke run on model-size images.
    const figures = await daemonEval(join(out, 'default-fp32'), join(out, 'references'), join(dir, 'test'));
    expect(Math.abs(figures.f1 - report.parity['default-fp32']!.f1), 'FP32 F1: daemon vs report').toBeLessThanOrEqual(0.01);
    expect(Math.abs(figures.auroc - report.parity['default-fp32']!.auroc), 'FP32 AUROC: daemon vs report').toBeLessThanOrEqual(0.01);
  }, 900_000);

  it('with one defect label in the test folder, does not call a target met against a supervised baseline that gives one answer', async () => {
    const dir = plantFolders({ labeled: { good: 30, scratch: 4, hole: 3 }, test: { good: 12, scratch: 4 }, unlabeled: { good: 20 } });
    const out = join(dir, 'out');
    // One supervised epoch on 37 images is one step: the baseline calls everything good.
    const run = await runPipeline([...ownFolderArgs(dir), '--out', out, ...quick, '--supervised-epochs', '1']);
    expectFinished(run, 'training.pipeline with one defect label in the test folder');
    const report = readReport<Report>(join(out, 'report'));
    expect(report.data.testLabels).toEqual({ missingFromTest: ['hole'], newInTest: [] });
    const supervised = report.results.find((r) => r.model === 'supervised')!;
    expect(supervised.degenerate, 'precondition: this run\'s supervised baseline gives one answer').toBe('calls every test item "good"');
    const target = report.targets['labels200VsSupervised']!;
    expect(target.met).toBeNull();
    expect(target.detail).toContain('the supervised baseline calls every test item "good", so it is no yardstick');
    expect(readFileSync(join(out, 'report', 'report.md'), 'utf8')).toMatch(/within 0\.02 of supervised .*: not judged/);
  }, 900_000);
});
