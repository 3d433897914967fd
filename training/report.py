"""report.md / report.json / report.png from the pipeline's figures."""
import json
from pathlib import Path

import matplotlib

matplotlib.use('Agg')  # no display on the build machine
import matplotlib.pyplot as plt  # noqa: E402

METRICS = ('precision', 'recall', 'f1', 'auroc')


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


def write_report(folder: Path, report: dict):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'report.json').write_text(json.dumps(report, indent=2) + '\n')
    _chart(folder / 'report.png', report['results'])
    (folder / 'report.md').write_text(_markdown(report))


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
    lines += ['', '## Targets', '']
    for t in r['targets'].values():
        verdict = 'not judged' if t['met'] is None else 'met' if t['met'] else 'NOT met'
        lines.append(f"- {t['text']}: {verdict} ({t['detail']})")
    lines += ['', '## Parity set (references + parity test folder, bundle classifier settings)', '',
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
    lines += ['', 'TensorRT accepts only int8 with zero point 0 (bias int32 is dequantized with zero point 0).',
              '', '## Method', '']
    lines += [f'- {m}' for m in r['method']]
    lines += ['', '## Run', '', f"Wall time {r['timing']['totalSeconds']:.0f} s; stages: "
              + ', '.join(f'{k} {v:.0f} s' for k, v in r['timing']['stages'].items()) + '.', '']
    return '\n'.join(lines)


def _chart(path: Path, rows: list):
    fig, ax = plt.subplots(figsize=(11, 4.5))
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
