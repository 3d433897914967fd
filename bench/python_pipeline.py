"""The plain Python pipeline linewatch is compared with (issue 13): PIL decode, convert('L') and
resize, PyTorch at batch 64, a numpy kNN. Same model architecture as the default bundles
(training/model.py), FP32 or INT8 (training/export.py's FX post-training quantization).

Needs only Debian's python3-torch, python3-pil and numpy. The weights are freshly initialised:
speed does not depend on them, and the bundles ship ONNX only. Start-up (model build,
quantization, reading the files, embedding the references) is excluded from the figure.

    /usr/bin/python3 -m bench.python_pipeline FRAMES_DIR REFERENCES_DIR [--int8] [--threads 2]
"""
import argparse
import io
import json
import os
import time

import numpy as np
import torch
from PIL import Image

from training.export import quantize_int8
from training.model import Embedder, Encoder, make_projection

BATCH = 64
SIZE = 28


def image_files(folder):
    out = []
    for root, _, names in os.walk(folder):
        out += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(('.jpg', '.jpeg', '.png'))]
    return sorted(out)


def tensor(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    img.draft('L', (SIZE, SIZE))  # JPEG DCT scaling, as a careful Python pipeline would
    return np.asarray(img.convert('L').resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32)


def embed(model, arrays):
    with torch.no_grad():
        x = torch.from_numpy((np.stack(arrays)[:, None] / 255.0 - 0.1784) / 0.3033)
        v = model(x).numpy()
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('frames')
    parser.add_argument('references')
    parser.add_argument('--int8', action='store_true')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    encoder = Encoder()
    model = Embedder(encoder, make_projection(encoder.feature_dim)).eval()
    references = [open(p, 'rb').read() for p in image_files(args.references)]
    if args.int8:
        model = quantize_int8(model, torch.from_numpy(np.stack([tensor(r) for r in references[:64]])[:, None] / 255.0), False)
    ref_vectors = np.concatenate([embed(model, [tensor(r) for r in references[i:i + BATCH]]) for i in range(0, len(references), BATCH)])
    frames = [open(p, 'rb').read() for p in image_files(args.frames)]
    embed(model, [tensor(f) for f in frames[:BATCH]])  # warm-up

    started = time.perf_counter()
    cpu_started = time.process_time()
    nearest = []
    for i in range(0, len(frames), BATCH):
        vectors = embed(model, [tensor(f) for f in frames[i:i + BATCH]])
        nearest.append(np.argmax(vectors @ ref_vectors.T, axis=1))  # cosine kNN, k = 1
    seconds = time.perf_counter() - started
    cpu_ms_per_image = (time.process_time() - cpu_started) / len(frames) * 1000
    print(json.dumps({'pipeline': f"python {'int8' if args.int8 else 'fp32'}", 'images': len(frames), 'seconds': round(seconds, 3),
                      'imagesPerSecond': round(len(frames) / seconds), 'cpuMsPerImage': round(cpu_ms_per_image, 3), 'threads': args.threads, 'torch': torch.__version__}))


if __name__ == '__main__':
    main()
