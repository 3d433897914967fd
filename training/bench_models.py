"""Camera-sized encoders for `linewatch bench`: the default model's architecture at a larger input
(64x64 and 112x112 gray by default), exported FP32 and INT8 exactly as the pipeline exports the
shipped bundles. They are for speed only: the weights are random (batch-norm statistics taken from
the sample frames, so activations have realistic ranges for INT8 calibration), so their embeddings
mean nothing. From the repo root:
    /usr/bin/python3 -m training.bench_models                    # writes bench/models/camera-<size>-{fp32,int8}
    node dist/cli/main.js bench --fp32 bench/models/camera-112-fp32 --int8 bench/models/camera-112-int8
"""
import argparse
from pathlib import Path

import numpy as np
import torch

from .data import list_images, read_gray
from .export import export_int8, export_onnx, quantize_int8, write_bundle
from .model import EMBEDDING_DIM, WIDTHS, Embedder, Encoder, make_projection
from .train import log

ROOT = Path(__file__).resolve().parent.parent
# The shipped bundles' input normalisation (models/default-*/manifest.json), so the same frames feed both.
MEAN, STD = 0.1784, 0.3033
CLASSIFIER = {'k': 1, 'threshold': 0.5, 'unknownDistance': 2, 'goodLabel': 'good'}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sizes', default='64,112', help='input widths = heights, comma-separated')
    p.add_argument('--frames', type=Path, default=ROOT / 'samples/line/frames', help='calibration images')
    p.add_argument('--out', type=Path, default=ROOT / 'bench/models')
    p.add_argument('--widths', default=','.join(map(str, WIDTHS)),
                   help='stage widths (default: the shipped model\'s; 64,128,256,512 is ResNet18\'s)')
    p.add_argument('--seed', type=int, default=13)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    widths = tuple(int(w) for w in args.widths.split(','))
    # Bundles of another width say so in their folder name.
    label = '' if widths == WIDTHS else '-w' + '-'.join(map(str, widths))
    paths = list_images(args.frames)
    if not paths:
        raise SystemExit(f'no calibration images in {args.frames}')
    for size in (int(s) for s in args.sizes.split(',')):
        frames = np.stack([read_gray(path, size) for path in paths])
        calib = torch.from_numpy(((frames / 255.0 - MEAN) / STD).astype(np.float32))[:, None]
        encoder = Encoder(widths=widths)
        model = Embedder(encoder, make_projection(encoder.feature_dim))
        # Batch-norm statistics from the frames, so each layer's activations are in a realistic range.
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # a cumulative average over the passes
        model.train()
        with torch.no_grad():
            for i in range(0, len(calib), 64):
                model(calib[i:i + 64])
        model.eval()
        for precision in ('fp32', 'int8'):
            folder = args.out / f'camera-{size}{label}-{precision}'
            path = folder / 'model.onnx'
            if precision == 'fp32':
                export_onnx(model, path, size)
            else:
                export_int8(quantize_int8(model, calib, False), path, size, False)
            write_bundle(folder, path, f'camera-{size}{label}' + ('-int8' if precision == 'int8' else ''), '0.0.1', precision,
                         size, MEAN, STD, CLASSIFIER, EMBEDDING_DIM)
            log(f'wrote {folder} ({path.stat().st_size} bytes)')


if __name__ == '__main__':
    main()
