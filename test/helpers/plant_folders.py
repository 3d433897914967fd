"""Small generated image folders laid out as a plant gives them to training.pipeline, for the tests
of test/training/own-folders.test.ts.

    /usr/bin/python3 test/helpers/plant_folders.py OUT '{"labeled": {"good": 80, "scratch": 6}, "test": {...}}'

Writes OUT/unlabeled/, OUT/labeled/<label>/ and OUT/test/<label>/ with that many images per label.
The product is a bright disc; each defect label draws its own mark on it. Images come in mixed
sizes, gray and colour (RGB and RGBA), PNG and JPEG, as a plant's cameras would give them."""
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZES = ((28, 28), (40, 40), (56, 48), (30, 36))
MARKS = {
    'scratch': lambda d, w, h: d.line((w * 0.3, h * 0.3, w * 0.7, h * 0.7), fill=(20, 20, 20), width=max(2, w // 12)),
    'hole': lambda d, w, h: d.ellipse((w * 0.42, h * 0.42, w * 0.58, h * 0.58), fill=(0, 0, 0)),
    'stain': lambda d, w, h: d.rectangle((w * 0.55, h * 0.2, w * 0.8, h * 0.45), fill=(90, 60, 30)),
    'dent': lambda d, w, h: d.ellipse((w * 0.1, h * 0.1, w * 0.9, h * 0.5), fill=(60, 60, 60)),
}


def item(label: str, i: int, rng) -> Image.Image:
    w, h = SIZES[i % len(SIZES)]
    img = Image.new('RGB', (w, h), tuple(int(v) for v in rng.integers(0, 30, 3)))
    draw = ImageDraw.Draw(img)
    r = rng.uniform(0.3, 0.4)
    tone = tuple(int(v) for v in rng.integers(170, 230, 3))
    draw.ellipse((w * (0.5 - r), h * (0.5 - r), w * (0.5 + r), h * (0.5 + r)), fill=tone)
    if label != 'good':
        MARKS[label](draw, w, h)
    noisy = np.clip(np.asarray(img, np.float32) + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(noisy, 'RGB')
    return (img.convert('L'), img, img.convert('RGBA'))[i % 3]  # gray, colour, colour with alpha


def write(folder: Path, label: str, count: int, rng):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = item(label, i, rng)
        if i % 4 == 3 and img.mode != 'RGBA':
            img.save(folder / f'{label}-{i:04d}.jpg', quality=95)
        else:
            img.save(folder / f'{label}-{i:04d}.png')


def main(out: Path, spec: dict):
    rng = np.random.default_rng(spec.get('seed', 1))
    for split in ('labeled', 'test'):
        for label, count in spec.get(split, {}).items():
            write(out / split / label, label, count, rng)
    for label, count in spec.get('unlabeled', {'good': 60}).items():
        write(out / 'unlabeled' / 'stream', label, count, rng)


if __name__ == '__main__':
    main(Path(sys.argv[1]), json.loads(sys.argv[2]))
