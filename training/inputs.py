"""A plant's folders, read and checked before any training: every problem is reported at once,
each with its fix, and the run stops with exit status 1 and no stack trace, instead of failing
minutes into training or, worse, in the report after all of it."""
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from .data import list_files, load_labeled, read_images

SHOWN_FILES = 4  # files named per problem; the rest are counted
MIN_DEFECT = 2  # out-of-fold calibration scores an image against the others: one of its kind must remain


class Problems:
    """What is wrong with the inputs, one entry per problem, and its fix."""

    def __init__(self):
        self.lines = []

    def add(self, what: str, fix: str):
        self.lines.append(f'- {what}\n  fix: {fix}')

    def files(self, flag: str, found: list):
        """One entry per kind of unusable file, naming a few of them."""
        by_reason = defaultdict(list)
        for path, problem in found:
            by_reason[(problem.reason, problem.fix)].append(path)
        for (reason, fix), paths in by_reason.items():
            names = ', '.join(str(p) for p in paths[:SHOWN_FILES])
            more = f' and {len(paths) - SHOWN_FILES} more' if len(paths) > SHOWN_FILES else ''
            self.add(f'{flag}: {len(paths)} file(s) {reason}: {names}{more}', fix)

    def stop_if_any(self):
        if self.lines:
            sys.exit(f'training.pipeline: {len(self.lines)} problem(s) with the inputs; nothing was trained.\n'
                     + '\n'.join(self.lines))


def _folder(problems: Problems, flag: str, folder: Path) -> bool:
    if folder.is_dir():
        return True
    problems.add(f'{flag} {folder} {"is not a folder" if folder.exists() else "does not exist"}',
                 f'give {flag} an existing folder of images')
    return False


def _labeled(problems: Problems, flag: str, folder: Path, size: int):
    """Images, labels and paths of a folder with one subfolder per label; empty subfolders
    count as labels with no image."""
    if not _folder(problems, flag, folder):
        return np.zeros((0, size, size), np.uint8), np.asarray([], str), [], {}
    found = []
    x, y, paths = load_labeled(folder, size, found)
    problems.files(flag, found)
    counts = {p.name: 0 for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.')}
    for label in y:
        counts[label] += 1
    return x, np.asarray(y), paths, counts


def load_inputs(args, folds: int):
    """Read --unlabeled, --labeled, --test and --parity-test, checking all of them first.
    Returns (unlabeled images, (pool images, labels, paths), (test images, labels))."""
    problems, good = Problems(), args.good_label
    unlabeled = np.zeros((0, args.size, args.size), np.uint8)
    if _folder(problems, '--unlabeled', args.unlabeled):
        found = []
        unlabeled, _ = read_images(list_files(args.unlabeled), args.size, found)
        problems.files('--unlabeled', found)
    pool_x, pool_y, pool_paths, pool_counts = _labeled(problems, '--labeled', args.labeled, args.size)
    test_x, test_y, _, test_counts = _labeled(problems, '--test', args.test, args.size)
    if args.parity_test.resolve() != args.test.resolve():
        _labeled(problems, '--parity-test', args.parity_test, args.size)

    if args.labeled.is_dir():
        if good not in pool_counts:
            problems.add(f'--labeled {args.labeled} has no "{good}" subfolder (its subfolders: '
                         f'{", ".join(sorted(pool_counts)) or "none"})',
                         f'put images of the product as it should be in {args.labeled / good}/, '
                         'or name that subfolder with --good-label')
        elif pool_counts[good] < folds:
            problems.add(f'--labeled: "{good}" has {pool_counts[good]} image(s); calibration holds out '
                         f'1/{folds} of them at a time, so it needs at least {folds}',
                         f'add images to {args.labeled / good}/')
        defects = {lab: n for lab, n in pool_counts.items() if lab != good}
        if not any(defects.values()):
            problems.add(f'--labeled {args.labeled} has no defect images: the threshold is calibrated '
                         'on labeled anomalies', 'add a subfolder per kind of defect (e.g. scratch/) '
                         'with a few images of it')
        for lab, n in sorted(defects.items()):
            if n < MIN_DEFECT and any(defects.values()):
                problems.add(f'--labeled: label "{lab}" has {n} image(s); out-of-fold calibration scores '
                             f'each image against the others, so a label needs at least {MIN_DEFECT}',
                             f'add images to {args.labeled / lab}/, or move them into the folder of a '
                             'similar defect')
    if args.test.is_dir():
        if not test_counts.get(good):
            problems.add(f'--test {args.test} has no "{good}" images: precision and AUROC compare '
                         'anomalies with good items', f'put held-out good images in {args.test / good}/')
        if not any(n for lab, n in test_counts.items() if lab != good):
            problems.add(f'--test {args.test} has no defect images: recall and AUROC need some',
                         'add a subfolder per kind of defect with held-out images of it')
    problems.stop_if_any()
    return unlabeled, (pool_x, pool_y, pool_paths), (test_x, test_y)


def fit_label_sizes(args, pool_size: int) -> list:
    """Label sizes larger than the labeled folder become its size: use what there is, and say so.
    Returns the notes for the log and the report."""
    notes = []
    sizes = sorted({min(n, pool_size) for n in args.label_sizes})
    if sizes != sorted(args.label_sizes):
        notes.append(f'--label-sizes {",".join(map(str, args.label_sizes))}: the labeled folder has only '
                     f'{pool_size} images, so the sizes compared are {",".join(map(str, sizes))}')
    if args.bundle_labels > pool_size:
        notes.append(f'--bundle-labels {args.bundle_labels}: the bundle uses all {pool_size} labeled images')
    args.label_sizes, args.bundle_labels = sizes, min(args.bundle_labels, pool_size)
    return notes


def check_draws(order: np.ndarray, pool_y: np.ndarray, sizes: list, good: str):
    """Each label size trains on the first n of one random order: each draw needs good images and
    anomalies, or its calibration has nothing to separate."""
    problems = Problems()
    for n in sizes:
        drawn = pool_y[order[:n]]
        bad, ok = int((drawn != good).sum()), int((drawn == good).sum())
        if bad == 0 or ok < 2:
            problems.add(f'the {n} labeled images drawn for --label-sizes {n} hold {ok} "{good}" and {bad} '
                         f'defect image(s) (the labeled folder has {int((pool_y != good).sum())} defects in '
                         f'{len(pool_y)})', f'drop {n} from --label-sizes, or add defect images')
    problems.stop_if_any()


def label_mismatch(pool_y: np.ndarray, test_y: np.ndarray, good: str) -> dict:
    """Defect labels in one folder and not the other. New kinds of anomaly in the test folder are the
    normal case on a line: they can only be found as unlike every reference."""
    pool, test = set(pool_y) - {good}, set(test_y) - {good}
    return {'missingFromTest': sorted(pool - test), 'newInTest': sorted(test - pool)}
