"""The product sweep: the training pipeline on sample lines with other fashion-mnist classes as
the product, so the method's figures are a mean over products rather than one class's.

    /usr/bin/python3 -m training.sweep                  # the set of training/README.md, about an hour
    /usr/bin/python3 -m training.sweep --smoke --products trouser,bag --out /tmp/sweep   # CI, ~30 s

Each product's line is built and trained in a scratch folder (`--work`, deleted afterwards unless
given) with `training.pipeline --no-bundles`: nothing is written to models/ or samples/. Writes
sweep.md, sweep.json and sweep.png to --out, and each product's report.md and figures to
--out/products/ as it goes: rerun with the same options, an interrupted sweep keeps those products.
Options it does not know are passed to training.pipeline (e.g. --label-sizes 200,2000).
"""
import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import pipeline
from .data import FASHION_CLASSES
from .report import curve_table, draw_pr_curves, plt, write_json

ROOT = pipeline.ROOT
# Each product's defects: the three other classes whose mean image (over the package's 7,000 images
# of each class) is nearest its own, by Euclidean distance in pixels. For the sample line's sneaker
# this gives its sandal, ankle-boot and bag: every product gets wrong products that look like it.
NEAREST = {
    't-shirt': ['shirt', 'dress', 'pullover'],
    'trouser': ['dress', 't-shirt', 'shirt'],
    'pullover': ['coat', 'shirt', 'bag'],
    'dress': ['trouser', 't-shirt', 'shirt'],
    'coat': ['pullover', 'shirt', 't-shirt'],
    'sandal': ['sneaker', 'ankle-boot', 'bag'],
    'shirt': ['pullover', 'coat', 't-shirt'],
    'sneaker': ['sandal', 'ankle-boot', 'bag'],
    'bag': ['shirt', 'pullover', 'coat'],
    'ankle-boot': ['bag', 'sandal', 'sneaker'],
}
DEFECT_RULE = ('Each product\'s defects are the three other classes whose mean image is nearest its own '
               '(for sneaker: sandal, ankle-boot, bag, the sample line\'s), at the sample line\'s 10% of items.')
# Seven of the ten classes, about 8 minutes each on 2 idle cores: a sweep of about an hour. Each kind
# of item is in: trousers, bags, footwear, tops (pullover, shirt: more tops; sneaker: the sample line).
DEFAULT_PRODUCTS = ('trouser', 'bag', 'sandal', 't-shirt', 'ankle-boot', 'coat', 'dress')
METRICS = (('f1', 'F1'), ('auroc', 'AUROC'))
# Bumped when a product's report rows change shape or meaning: a sweep does not resume from older results
# (3: kNN on the encoder's pooled stage 3-4 features instead of its bottleneck vector. 4 was fine-tuning
# with the unlabeled pull on by default, undone the next day. 5: the pull on by default again, with
# relit copies of the unlabeled images, --pull-lighting).
FORMAT = 5


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--products', default=','.join(DEFAULT_PRODUCTS),
                   help=f'comma-separated fashion-mnist classes, each the product of one run ({", ".join(FASHION_CLASSES)})')
    p.add_argument('--out', type=Path, default=ROOT / 'training' / 'report' / 'sweep',
                   help='where sweep.md, sweep.json, sweep.png and products/ are written')
    p.add_argument('--work', type=Path, help='scratch folder for the runs (default: a temporary one, deleted)')
    p.add_argument('--smoke', action='store_true', help='each run as training.pipeline --smoke (CI)')
    args, passed = p.parse_known_args(argv)
    args.products = args.products.split(',')
    unknown = [name for name in args.products if name not in FASHION_CLASSES]
    if unknown or len(set(args.products)) != len(args.products):
        sys.exit(f'--products {",".join(args.products)}: give distinct fashion-mnist classes '
                 f'({", ".join(FASHION_CLASSES)})')
    for flag in ('--product', '--defects', '--out', '--no-bundles'):
        if any(a == flag or a.startswith(flag + '=') for a in passed):
            sys.exit(f'{flag} is set by the sweep for each product; leave it out')
    return args, passed


def summary(row: dict) -> dict:
    """The figures of one report row the sweep keeps."""
    keep = ('model', 'labels', 'precision', 'recall', 'f1', 'auroc', 'operatingPoints', 'prCurve', 'degenerate')
    return {k: row[k] for k in keep if k in row}


def mean_rows(products: list) -> list:
    """Each model and label size, averaged over the products. Recall at precision >= level is 0
    for a product where no threshold reaches that precision (the row counts them)."""
    rows = []
    for first in products[0]['results']:
        same = [next(r for r in p['results'] if (r['model'], r['labels']) == (first['model'], first['labels']))
                for p in products]
        high_precision = [r['operatingPoints']['recallAtPrecision'] for r in same]
        rows.append({
            'model': first['model'], 'labels': first['labels'],
            **{m: float(np.mean([r[m] for r in same])) for m in ('precision', 'recall', 'f1', 'auroc')},
            'operatingPoints': {
                'level': first['operatingPoints']['level'],
                'precisionAtRecall': {'precision': float(np.mean([_high_recall(r) for r in same]))},
                'recallAtPrecision': {'recall': float(np.mean([_high_precision(r) or 0.0 for r in same])),
                                      'unreachable': sum(p is None for p in high_precision)}},
            'prCurve': {'recall': first['prCurve']['recall'],
                        'precision': np.round(np.mean([r['prCurve']['precision'] for r in same], 0), 4).tolist()}})
    return rows


def _column(row: dict) -> str:
    return row['model'] if row['model'].startswith('supervised') else f"{row['model'].split('+')[0]} {row['labels']}"


def _high_recall(row: dict) -> float:
    """Precision at the operating point of high recall (always reachable)."""
    return row['operatingPoints']['precisionAtRecall']['precision']


def _high_precision(row: dict):
    """Recall at the operating point of high precision, None where no threshold reaches it."""
    point = row['operatingPoints']['recallAtPrecision']
    return point and point['recall']


def _cell(value) -> str:
    return '-' if value is None else f'{value:.3f}'


def markdown(sweep: dict) -> str:
    mean, products = sweep['mean'], sweep['products']
    level = mean[0]['operatingPoints']['level']
    run = sweep['run']
    lines = ['# linewatch product sweep', '',
             f"The training pipeline on {len(products)} sample line(s), each with another fashion-mnist class as "
             f"the product: {', '.join(p['product'] for p in products)}. {sweep['defectRule']} "
             f"Test split of each: {products[0]['test']} images ({products[0]['testAnomalies']} anomalies); anomaly "
             f"= positive class. Command: `{sweep['command']}` at commit {run['commit']}, {run['date']}; "
             f"{sum(p['seconds'] for p in products) / 60:.0f} min of runs on {run['machine']} (per product below, "
             "with the load average when it finished).", '']
    unreachable = [r for r in mean if r['operatingPoints']['recallAtPrecision']['unreachable']]
    lines += [f'## Mean over the {len(products)} product(s)', '',
              f'| model | labels | precision | recall | F1 | AUROC | precision at recall >= {level} '
              f'| recall at precision >= {level} |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in mean:
        lines.append(f"| {r['model']} | {r['labels']} | " + ' | '.join(
            _cell(v) for v in (r['precision'], r['recall'], r['f1'], r['auroc'], _high_recall(r), _high_precision(r)))
            + (f" ({n} at 0)" if (n := r['operatingPoints']['recallAtPrecision']['unreachable']) else '')
            + ' |')
    lines += ['', 'Each figure is the mean of the products\' figures on their own test splits. The operating points '
              'are those of training/report/report.md (best precision among thresholds reaching the recall, and '
              'vice versa), picked per product on its test split; their thresholds are in products/<product>.md.'
              + (' "(n at 0)": for n products no threshold reaches that precision; they count as recall 0.'
                 if unreachable else ''), '',
              '### Mean precision-recall curves', '',
              'Mean over the products of the best precision among thresholds reaching each recall (sweep.png draws '
              'them):', '']
    lines += curve_table(mean)
    lines += ['', '## Per product', '']
    columns = [_column(r) for r in mean]
    for title, value in [(name, lambda r, m=m: r[m]) for m, name in METRICS] + [
            (f'precision at recall >= {level}', _high_recall), (f'recall at precision >= {level}', _high_precision)]:
        lines += [f'{title}:', '', '| product | defects | ' + ' | '.join(columns) + ' |',
                  '| --- | --- |' + ' ---: |' * len(columns)]
        for p in products:
            lines.append(f"| {p['product']} | {', '.join(p['defects'])} | "
                         + ' | '.join(_cell(value(r)) for r in p['results']) + ' |')
        lines += ['| mean | | ' + ' | '.join(_cell(value(r)) for r in mean) + ' |', '']
    degenerate = [f"{p['product']} ({r['degenerate']})" for p in products for r in p['results'] if r.get('degenerate')]
    if degenerate:
        lines += [f"Supervised baselines that give one answer to everything: {', '.join(degenerate)}.", '']
    lines += ['## Settings', '', f"Label sizes {', '.join(map(str, products[0]['labelSizes']))}; every other setting is "
              "training.pipeline's (training/report/report.md, Method), the same for each product. Each "
              "product's report (classifier settings, thresholds, recall per defect label, timings) is in "
              'products/<product>.md.', '']
    lines += [f"- {p['product']}: {p['seconds'] / 60:.1f} min, load average {p['loadAverage']:.1f}" for p in products]
    lines += ['']
    return '\n'.join(lines)


def chart(path: Path, sweep: dict):
    products, mean = sweep['products'], sweep['mean']
    fig, (curves, bars) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={'width_ratios': [1, 1.4]})
    draw_pr_curves(curves, mean, f"mean over {len(products)} products' test splits")
    shown = [i for i, r in enumerate(mean) if r['model'] == 'fine-tuned+kNN' or r['model'].startswith('supervised')]
    width = 0.8 / len(shown)
    for j, i in enumerate(shown):
        bars.bar([k + j * width for k in range(len(products) + 1)],
                 [p['results'][i]['f1'] for p in products] + [mean[i]['f1']], width, label=_column(mean[i]))
    bars.set_xticks([k + 0.4 - width / 2 for k in range(len(products) + 1)])
    bars.set_xticklabels([p['product'] for p in products] + ['mean'], fontsize=8)
    bars.set_ylim(0, 1.05)
    bars.set_ylabel('F1, test split')
    bars.legend(fontsize=7, loc='lower right')
    bars.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def git_commit(out: Path) -> str:
    """HEAD, marked when files other than the sweep's own outputs (out) differ from it."""
    head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True)
    inside = out.resolve().is_relative_to(ROOT.resolve())
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no', '--', '.']
                           + ([f':(exclude){out.resolve()}'] if inside else []), cwd=ROOT, capture_output=True,
                           text=True, check=True)
    return head.stdout.strip() + (' (with uncommitted changes)' if dirty.stdout.strip() else '')


def main(argv=None):
    args, passed = parse_args(argv)
    start = time.time()
    products = []
    with tempfile.TemporaryDirectory(prefix='linewatch-sweep-') as tmp:
        work = args.work or Path(tmp)
        (args.out / 'products').mkdir(parents=True, exist_ok=True)
        for product in args.products:
            began = time.time()
            run, kept = work / product, args.out / 'products' / f'{product}.json'
            options = passed + ['--product', product, '--defects', ','.join(NEAREST[product])] + (
                ['--smoke'] if args.smoke else [])
            # An interrupted sweep resumes: a product already run with the same options is kept.
            earlier = json.loads(kept.read_text()) if kept.exists() else None
            if earlier and earlier.get('format') == FORMAT and earlier['pipelineOptions'] == options:
                pipeline.log(f'{product}: kept from {kept}')
                products.append(earlier)
                continue
            pipeline.main(options + ['--out', str(run), '--no-bundles'])
            report = json.loads((run / 'report' / 'report.json').read_text())
            shutil.copyfile(run / 'report' / 'report.md', args.out / 'products' / f'{product}.md')
            products.append({'format': FORMAT, 'product': product, 'defects': NEAREST[product], 'pipelineOptions': options,
                             'test': report['data']['test'], 'testAnomalies': report['data']['testAnomalies'],
                             'labelSizes': report['data']['labelSizes'], 'seconds': time.time() - began,
                             'loadAverage': os.getloadavg()[0],
                             'results': [summary(r) for r in report['results']]})
            write_json(kept, products[-1])
    sweep = {
        'command': ' '.join(['/usr/bin/python3 -m training.sweep'] + [shlex.quote(a) for a in (argv or sys.argv[1:])]),
        'smoke': args.smoke, 'defectRule': DEFECT_RULE,
        'run': {'commit': git_commit(args.out), 'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(start)),
                'machine': f'{os.cpu_count()} cores, {platform.machine()}'},
        'mean': mean_rows(products), 'products': products}
    write_json(args.out / 'sweep.json', sweep)
    (args.out / 'sweep.md').write_text(markdown(sweep))
    chart(args.out / 'sweep.png', sweep)
    pipeline.log(f'wrote {args.out}/sweep.md, sweep.json, sweep.png')


if __name__ == '__main__':
    main()
