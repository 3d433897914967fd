"""report.md / report.json / report.png from the pipeline's figures."""
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use('Agg')  # no display on the build machine
import matplotlib.pyplot as plt  # noqa: E402

METRICS = ('precision', 'recall', 'f1', 'auroc')
CURVE_RECALLS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)  # the recalls at which report.md gives the PR curve
# A list of numbers, one per line as json.dumps(indent=2) writes it.
_NUMBER_LIST = re.compile(r'\[\s*(-?[0-9][-+0-9.eE]*(?:,\s*-?[0-9][-+0-9.eE]*)*)\s*\]')


def _fmt(v):
    return f'{v:.3f}' if isinstance(v, float) else str(v)


def _settings(row):
    s = row.get('classifier')
    if not s:
        return row.get('decision', '')
    steps = f", {row['tripletSteps']} steps" if 'tripletSteps' in row else ''
    return f"k={s['k']} t={s['threshold']} u={s['unknownDistance']}{steps}"


def _distinct(row):
    """How many thresholds the score offers: its distinct values out of fold and on the test split."""
    if 'distinctScores' not in row:
        return '-'
    return f"{row.get('calibrationDistinctScores', '-')} / {row['distinctScores']}"


def write_json(path: Path, data: dict):
    """Indented JSON with each list of numbers (the PR curves) on one line."""
    text = json.dumps(data, indent=2)
    path.write_text(_NUMBER_LIST.sub(lambda m: '[' + ', '.join(n.strip() for n in m.group(1).split(',')) + ']', text) + '\n')


def write_report(folder: Path, report: dict):
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / 'report.json', report)
    _chart(folder / 'report.png', report['results'])
    (folder / 'report.md').write_text(_markdown(report))


def precision_at(curve: dict, recall: float) -> float:
    """The interpolated PR curve's precision at one of its recalls."""
    return curve['precision'][min(range(len(curve['recall'])), key=lambda i: abs(curve['recall'][i] - recall))]


def operating_table(rows: list, level: float) -> list:
    """Markdown lines: each row's operating points (eval.operating_points), - where unreachable."""
    lines = [f'| model | labels | precision at recall >= {level} | its recall | threshold '
             f'| recall at precision >= {level} | its precision | threshold |',
             '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for row in rows:
        cells = []
        for point, first, second in (('precisionAtRecall', 'precision', 'recall'),
                                     ('recallAtPrecision', 'recall', 'precision')):
            p = row['operatingPoints'][point]
            cells += ['-'] * 3 if p is None else [_fmt(p[first]), _fmt(p[second]), str(p['threshold'])]
        lines.append(f"| {row['model']} | {row['labels']} | " + ' | '.join(cells) + ' |')
    return lines


def curve_table(rows: list) -> list:
    """Markdown lines: each row's interpolated PR curve at CURVE_RECALLS."""
    lines = ['| model | labels | ' + ' | '.join(f'recall {r}' for r in CURVE_RECALLS) + ' |',
             '| --- | ---: |' + ' ---: |' * len(CURVE_RECALLS)]
    for row in rows:
        lines.append(f"| {row['model']} | {row['labels']} | "
                     + ' | '.join(_fmt(precision_at(row['prCurve'], r)) for r in CURVE_RECALLS) + ' |')
    return lines


def _markdown(r: dict) -> str:
    lines = ['# linewatch training report', '',
             f"Task: product `{r['data']['product']}` (label `{r['data']['goodLabel']}`), anomalies {', '.join(r['data']['defectLabels'])}; "
             f"test split {r['data']['test']} images ({r['data']['testAnomalies']} anomalies), never used for "
             f"training, calibration or enrollment. Anomaly = positive class. Command: `{r['command']}`.", '']
    lines += [f'- {note}' for note in r['notes']] + ([''] if r['notes'] else [])
    lines += [f"Exported bundle: {r['bundle']['model']} on {r['bundle']['labels']} labels, chosen by "
              f"{r['bundle']['why']}.", '']
    lines += ['## Anomaly vs good on the test split', '',
              '| model | labels | kNN references | classifier | precision | recall | F1 | AUROC '
              '| distinct scores (calibration / test) |',
              '| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |']
    for row in r['results']:
        lines.append(f"| {row['model']} | {row['labels']} | {row.get('references', '-')} | {_settings(row)} | "
                     + ' | '.join(_fmt(row[m]) for m in METRICS) + f' | {_distinct(row)} |')
    defects = r['data']['defectLabels'] + r['data']['testLabels']['newInTest']
    lines += ['', 'Recall per defect label (- where the test folder has none of that label):', '',
              '| model | labels | ' + ' | '.join(defects) + ' |', '| --- | ---: |' + ' ---: |' * len(defects)]
    for row in r['results']:
        lines.append(f"| {row['model']} | {row['labels']} | "
                     + ' | '.join(_fmt(row['recallByLabel'].get(d, '-')) for d in defects) + ' |')
    ranked = [row for row in r['results'] if 'operatingPoints' in row]
    level = ranked[0]['operatingPoints']['level']
    lines += ['', '## Operating points', '',
              'What a technician can set, read off each model\'s precision-recall curve on the test split: '
              f'the best precision among thresholds that find at least {level:.0%} of the anomalies, and the best '
              f'recall among thresholds whose anomaly calls are right at least {level:.0%} of the time '
              '(- where no threshold reaches it). The threshold is the `knn.threshold` that gives it (anomaly '
              'when score >= threshold; for the supervised model, a threshold on 1 - p(good)). Picked on the '
              'test split itself, these show what each model can reach; the calibrated threshold in the '
              'classifier column is the one a bundle ships with.', '']
    lines += operating_table(ranked, level)
    lines += ['', '## Precision-recall curves', '',
              'Best precision among the thresholds that reach each recall (the interpolated curve; '
              '`prCurve` in report.json has it at every 0.01 of recall, report.png draws it):', '']
    lines += curve_table(ranked)
    lines += ['', '## Targets', '']
    for t in r['targets'].values():
        verdict = 'not judged' if t['met'] is None else 'met' if t['met'] else 'NOT met'
        lines.append(f"- {t['text']}: {verdict} ({t['detail']})")
    if 'parity' in r:
        lines += _bundle_sections(r)
    lines += ['', '## Method', '']
    lines += [f'- {m}' for m in r['method']]
    lines += ['', '## Run', '', f"Wall time {r['timing']['totalSeconds']:.0f} s; stages: "
              + ', '.join(f'{k} {v:.0f} s' for k, v in r['timing']['stages'].items()) + '.', '']
    return '\n'.join(lines)


def _bundle_sections(r: dict) -> list:
    """Parity, bundles and INT8: absent from a --no-bundles run."""
    lines = ['', '## Parity set (references + parity test folder, bundle classifier settings)', '',
              f"References: `{r['paritySet']['references']}`; queries: `{r['paritySet']['test']}`.", '',
              '| bundle | embeddings from | precision | recall | F1 | AUROC |', '| --- | --- | ---: | ---: | ---: | ---: |']
    for name, row in r['parity'].items():
        lines.append(f"| {name} | {row['embeddings']} | " + ' | '.join(_fmt(row[m]) for m in METRICS) + ' |')
        if row['embeddings'] != 'PyTorch':
            torch_row = r['parityPyTorch'][name]
            lines.append(f'| {name} | PyTorch | ' + ' | '.join(_fmt(torch_row[m]) for m in METRICS) + ' |')
    lines += ['', 'The `parity` figures in report.json are the first row of each bundle: the exported ONNX '
              'model run by onnxruntime-node, scored by training/eval.py.']
    lines += ['', '## Bundles', '', '| bundle | precision | ONNX bytes | sha256 | max abs diff PyTorch vs onnxruntime-node '
              '| onnxruntime-node images/s (batch 64, 2 threads) |', '| --- | --- | ---: | --- | ---: | ---: |']
    for name, b in r['bundles'].items():
        ort = r['onnxruntime'].get(name, {})
        lines.append(f"| {name} | {b['precision']} | {b['bytes']} | `{b['sha256'][:16]}...` | "
                     f"{_fmt(ort.get('maxAbsDiff', 'n/a'))} | {_fmt(ort.get('imagesPerSecond', 'n/a'))} |")
    q = r['int8']
    lines += ['', '## INT8 quantization', '', q['method'], '',
              '| DequantizeLinear input | element types | tensors | with non-zero zero point |',
              '| --- | --- | ---: | ---: |']
    for kind, z in q['zeroPoints'].items():
        lines.append(f"| {kind} | {', '.join(z['dtypes'])} | {z['tensors']} | {z['nonZeroZeroPoint']} |")
    lines += ['', 'TensorRT accepts only int8 with zero point 0 (bias int32 is dequantized with zero point 0).']
    return lines


def draw_pr_curves(ax, rows: list, title: str):
    """The interpolated PR curves of the kNN models at each label size (fine-tuned solid,
    autoencoder dotted) and of the supervised model, with the operating level marked."""
    sizes = sorted({row['labels'] for row in rows if not row['model'].startswith('supervised')})
    colours = dict(zip(sizes, plt.cm.viridis([i / max(1, len(sizes)) for i in range(len(sizes))])))
    for row in rows:
        if row['model'] == 'supervised':
            style = {'color': 'black', 'linewidth': 2}
        elif row['model'] == 'supervised, balanced':
            style = {'color': 'grey', 'linewidth': 1.5, 'linestyle': '--'}
        elif row['model'] in ('fine-tuned+kNN', 'autoencoder+kNN'):
            style = {'color': colours[row['labels']], 'linestyle': '-' if row['model'] == 'fine-tuned+kNN' else ':'}
        else:
            continue  # the INT8 rows: the same curve as FP32, within 0.01
        ax.plot(row['prCurve']['recall'], row['prCurve']['precision'], label=f"{row['model']}, {row['labels']} labels",
                **style)
    level = rows[0]['operatingPoints']['level']
    ax.axhline(level, color='grey', linewidth=0.6, linestyle='--')
    ax.axvline(level, color='grey', linewidth=0.6, linestyle='--')
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel('recall')
    ax.set_ylabel('precision (best at this recall or more)')
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc='lower left')
    ax.grid(alpha=0.3)


def _chart(path: Path, rows: list):
    fig, (ax, curves) = plt.subplots(2, 1, figsize=(11, 10), gridspec_kw={'height_ratios': [1, 1.2]})
    width = 0.8 / len(METRICS)
    for i, m in enumerate(METRICS):
        ax.bar([j + i * width for j in range(len(rows))], [row[m] for row in rows], width, label=m)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))])
    names = [row['model'].replace(' (', '\n(') for row in rows]  # the INT8 runtime on its own line
    ax.set_xticklabels([f"{name}\n{row['labels']} labels" for name, row in zip(names, rows)], fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel('anomaly vs good, test split')
    ax.legend(ncol=4, loc='lower right', fontsize=8)
    ax.grid(axis='y', alpha=0.3)
    draw_pr_curves(curves, [row for row in rows if 'prCurve' in row], 'precision-recall curves, test split')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
