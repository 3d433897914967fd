import { spawnSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/daemon.js';
import { python } from '../helpers/training.js';

interface Figures {
  /** Held-out good items' mean cosine distance to the good centre, over the anomalies' (lower: the product packs tighter). */
  spread: { plain: number; pulled: number };
  /** pull_loss of a batch whose last tenth lies far away, with trim 0.15 and 0, and of the near part alone. */
  loss: { trimmed: number; untrimmed: number; nearOnly: number };
  /** Whether a run without a labeled anomaly (nothing to measure the pull against) equals a plain run. */
  noAnomalyIsPlain: boolean;
  /** Whether a run given unlabeled vectors with weight 0 (the pipeline's --pull 0) equals a plain run. */
  zeroIsPlain: boolean;
}

/**
 * training/train.py's fine-tuning on generated encoder vectors: 16-d, where the good items vary
 * widely along 8 nuisance directions and the anomalies sit apart along another. 20 labels
 * (10 good, 10 anomalies: too few good ones to show the product's whole variation) and 600
 * unlabeled vectors of the same product, one in ten an anomaly.
 */
function figures(): Figures {
  const run = spawnSync(python, ['-c', [
    'import json',
    'import numpy as np, torch',
    'from torch.nn import functional as F',
    'from training import train',
    'rng = np.random.default_rng(3)',
    'def items(n, anomaly):',
    '    x = np.zeros((n, 16), np.float32); x[:, 0] = 1',
    '    x[:, 1:9] = rng.normal(0, 0.6, (n, 8))',
    '    x[:, 9] = 1.0 if anomaly else 0.0',
    '    x[:, 10:] = rng.normal(0, 0.05, (n, 6))',
    '    return x',
    "x = np.concatenate([items(10, False), items(10, True)]); labels = ['good'] * 10 + ['scratch'] * 10",
    'unlabeled = np.concatenate([items(540, False), items(60, True)])',
    'held_good, held_bad = torch.as_tensor(items(200, False)), torch.as_tensor(items(200, True))',
    'def spread(proj):',
    '    with torch.no_grad():',
    '        centre = F.normalize(F.normalize(proj(torch.as_tensor(x[:10])), dim=1).mean(0), dim=0)',
    '        d = lambda v: (1 - F.normalize(proj(v), dim=1) @ centre).mean().item()',
    '        return d(held_good) / d(held_bad)',
    'plain = train.train_projection(x, labels, [100], 7)[0]',
    'pulled = train.train_projection(x, labels, [100], 7, unlabeled=unlabeled, pull=4)[0]',
    'zero = train.train_projection(x, labels, [100], 7, unlabeled=unlabeled, pull=0)[0].state_dict()',
    'identity = torch.nn.Identity()',
    'near, far = torch.as_tensor(items(90, False)), -torch.as_tensor(items(10, False))',
    'good, bad = torch.as_tensor(x[:10]), torch.as_tensor(x[10:])',
    'loss = lambda batch, trim: train.pull_loss(identity, good, bad, batch, trim).item()',
    "alone = train.train_projection(x[:10], labels[:10], [25], 7)[0].state_dict()",
    "with_unlabeled = train.train_projection(x[:10], labels[:10], [25], 7, unlabeled=unlabeled, pull=4)[0].state_dict()",
    "same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)",
    "print(json.dumps({'spread': {'plain': spread(plain), 'pulled': spread(pulled)},",
    "                  'loss': {'trimmed': loss(torch.cat([near, far]), 0.15), 'untrimmed': loss(torch.cat([near, far]), 0),",
    "                           'nearOnly': loss(near, 0)},",
    "                  'noAnomalyIsPlain': same(alone, with_unlabeled), 'zeroIsPlain': same(plain.state_dict(), zero)}))",
  ].join('\n')], { cwd: repoRoot, encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as Figures;
}

let result: Figures;
beforeAll(() => {
  result = figures();
}, 120_000);

/**
 * Fine-tuning can pull the line's unlabeled images towards the labeled good items' centre (Deep SAD's
 * use of unlabeled data, `--pull`), leaving out each batch's farthest share as the line's own anomalies.
 */
describe('fine-tuning with unlabeled images', () => {
  it('packs the product tighter against the anomalies than the labels alone do', () => {
    expect(result.spread.pulled).toBeLessThan(result.spread.plain * 0.8);
  });

  it('leaves the farthest share of an unlabeled batch out of the pull', () => {
    // 10 of 100 lie opposite the centre: they raise the mean, and trimming 15 % drops them (and the 5
    // farthest of the near ones).
    expect(result.loss.untrimmed).toBeGreaterThan(result.loss.nearOnly * 1.1);
    expect(result.loss.trimmed).toBeLessThan(result.loss.nearOnly);
  });

  it('is the plain triplet training when the labels hold no anomaly', () => {
    expect(result.noAnomalyIsPlain).toBe(true);
  });

  it('is the plain triplet training with a weight of 0 (the pipeline\'s --pull 0)', () => {
    expect(result.zeroIsPlain).toBe(true);
  });
});

/** training/data.py's lighting_copies (`--pull-lighting`): the unlabeled images under other lighting. */
describe('relit copies of the unlabeled images', () => {
  it('keeps the images first, then each copy relit as a p + b within the stated ranges', () => {
    const run = spawnSync(python, ['-c', [
      'import json',
      'import numpy as np',
      'from training.data import lighting_copies',
      'rng = np.random.default_rng(1)',
      'images = rng.integers(20, 200, (50, 28, 28)).astype(np.uint8)',
      'out = lighting_copies(images, 2, 7)',
      'copies = out[50:].reshape(2, 50, -1)',
      'x = np.tile(images.reshape(1, 50, -1).astype(np.float64), (2, 1, 1))',
      // Each copy is exactly a p + b (no clipping in this pixel range): fit a and b per image.
      'a = ((copies - copies.mean(2, keepdims=True)) * (x - x.mean(2, keepdims=True))).sum(2) / ((x - x.mean(2, keepdims=True)) ** 2).sum(2)',
      'b = copies.mean(2) - a * x.mean(2)',
      'residual = np.abs(copies - (a[..., None] * x + b[..., None])).max()',
      "print(json.dumps({'shape': list(out.shape), 'originals': bool((out[:50] == images).all()),",
      "                  'a': [float(a.min()), float(a.max())], 'b': [float(b.min()), float(b.max())], 'residual': float(residual),",
      "                  'same': bool((lighting_copies(images, 2, 7) == out).all()), 'none': list(lighting_copies(images, 0, 7).shape)}))",
    ].join('\n')], { cwd: repoRoot, encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    const r = JSON.parse(run.stdout) as { shape: number[]; originals: boolean; a: number[]; b: number[]; residual: number; same: boolean; none: number[] };
    expect(r.shape).toEqual([150, 28, 28]);
    expect(r.originals).toBe(true);
    expect(r.residual).toBeLessThan(1e-3);
    expect(r.a[0]).toBeGreaterThanOrEqual(0.7);
    expect(r.a[1]).toBeLessThanOrEqual(1);
    expect(r.a[1] - r.a[0], 'contrasts spread over the range').toBeGreaterThan(0.2);
    expect(r.b[0]).toBeGreaterThanOrEqual(0);
    expect(r.b[1]).toBeLessThanOrEqual(45);
    expect(r.b[1] - r.b[0], 'brightness spread over the range').toBeGreaterThan(30);
    expect(r.same, 'seeded').toBe(true);
    expect(r.none).toEqual([50, 28, 28]);
  });
});
