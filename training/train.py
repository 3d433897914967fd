"""Training loops: autoencoder pretraining, triplet fine-tuning of the projection on frozen
encoder vectors, and the supervised classifier baseline."""
import copy
import math
import time

import numpy as np
import torch
from torch.nn import functional as F

from .model import WIDTHS, Classifier, Decoder, Encoder, make_projection

# The unlabeled images' pull in fine-tuning (train_projection): its weight against the triplet loss
# (4: the best of 0.5-8 over 12 label draws and seeds of the sample line), and the share of each
# unlabeled batch left out as the line's own anomalies. The pipeline pulls relit copies of the images
# too (--pull-lighting); without them the pull cost the other products AUROC and made the model
# follow a drifting line worse (training/README.md).
PULL, TRIM = 4.0, 0.15


def log(msg: str):
    print(time.strftime('%H:%M:%S'), msg, flush=True)


def _cosine_lr(opt, base_lr: float, step: int, total: int):
    for group in opt.param_groups:
        group['lr'] = base_lr * 0.5 * (1 + math.cos(math.pi * step / total))


def _fit(modules, opt, n: int, epochs: int, batch: int, lr: float, loss_of, name: str, metric: str):
    """Epochs of shuffled mini-batches with a cosine learning rate; `loss_of(idx)` gives a batch's loss."""
    steps, step = epochs * math.ceil(n / batch), 0
    for epoch in range(epochs):
        for module in modules:
            module.train()
        total = 0.0
        for idx in torch.randperm(n).split(batch):
            _cosine_lr(opt, lr, step, steps)
            loss = loss_of(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            step += 1
        log(f'{name} epoch {epoch + 1}/{epochs} {metric} {total / n:.4f}')


def pretrain_autoencoder(x: torch.Tensor, epochs: int, seed: int, batch: int = 128, lr: float = 2e-3,
                         widths: tuple = WIDTHS, augment=None):
    """Unsupervised: reconstruct normalised images through the 128-d bottleneck (MSE). augment, when
    given, maps a batch to altered copies that are both input and target (not denoising).
    Returns the encoder and the decoder."""
    torch.manual_seed(seed)
    encoder, decoder = Encoder(widths=widths), Decoder(size=x.shape[-1])
    params = list(encoder.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=lr)

    def loss_of(idx):
        batch_x = x[idx] if augment is None else augment(x[idx])
        return F.mse_loss(decoder(encoder(batch_x)), batch_x)

    _fit([encoder, decoder], opt, len(x), epochs, batch, lr, loss_of, 'autoencoder', 'mse')
    return encoder.eval(), decoder.eval()


def random_affine(x: torch.Tensor, shift: float = 2.0, degrees: float = 10.0, scale: float = 0.1,
                  flip: bool = True) -> torch.Tensor:
    """Each image of a normalised batch moved on its own: a horizontal flip (half of them), a
    rotation of up to +-degrees, a scale of 1 +- scale and a shift of up to +-shift pixels; the
    area uncovered is background (the batch's darkest value, the empty belt)."""
    n, _, h, w = x.shape
    angle = (torch.rand(n) * 2 - 1) * math.radians(degrees)
    zoom = 1 + (torch.rand(n) * 2 - 1) * scale
    mirror = torch.where(torch.rand(n) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid works in [-1, 1] coordinates: a shift of s pixels is 2 s / size.
    tx, ty = ((torch.rand(2, n) * 2 - 1) * shift * 2) / torch.tensor([[w], [h]])
    theta = torch.stack([torch.stack([cos * mirror, -sin, tx], 1), torch.stack([sin * mirror, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = x.amin()
    return F.grid_sample(x - background, grid, mode='bilinear', padding_mode='zeros', align_corners=False) + background


def nt_xent_loss(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy: z holds two views of each of n images (rows i
    and i + n); each view's positive is the other view of its image, the 2n - 2 others negatives."""
    z = F.normalize(z, dim=1)
    n = len(z) // 2
    sim = (z @ z.T / temperature).fill_diagonal_(float('-inf'))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def pretrain_contrastive(encoder: Encoder, x: torch.Tensor, epochs: int, seed: int, batch: int = 256,
                         lr: float = 5e-4, temperature: float = 0.2) -> Encoder:
    """Self-supervised (SimCLR): two random_affine views of each unlabeled image are pulled together
    and pushed from the other images' views, through a small MLP head that is then dropped."""
    torch.manual_seed(seed)
    head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64))
    opt = torch.optim.Adam(list(encoder.parameters()) + list(head.parameters()), lr=lr)

    def loss_of(idx):
        views = torch.cat([random_affine(x[idx]), random_affine(x[idx])])
        return nt_xent_loss(head(encoder(views)), temperature)

    _fit([encoder, head], opt, len(x), epochs, batch, lr, loss_of, 'contrastive', 'nt-xent')
    return encoder.eval()


@torch.no_grad()
def embed(model: torch.nn.Module, x: torch.Tensor, batch: int = 512) -> np.ndarray:
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)]).numpy()


def batch_hard_triplet_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.5, eps: float = 1e-6):
    """Online batch-hard triplet loss on cosine distance with the anti-collapse scaling
    (Quaterion): relu((d(a, p_hardest) - d(a, n_hardest)) / (mean(d(a, n_hardest)) + eps) + margin).
    Dividing by the mean negative distance stops the loss from being met by shrinking all
    distances together (vector collapse). Anchors without a positive or negative are skipped."""
    emb = F.normalize(emb, dim=1)
    dist = 1 - emb @ emb.T
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(len(labels), dtype=torch.bool)
    hardest_pos = dist.masked_fill(~pos, float('-inf')).max(1).values
    hardest_neg = dist.masked_fill(same, float('inf')).min(1).values
    valid = pos.any(1) & (~same).any(1)
    if not valid.any():  # one label only (a fold without defects): nothing to learn, and mean() would be NaN
        return emb.sum() * 0
    hardest_pos, hardest_neg = hardest_pos[valid], hardest_neg[valid]
    return F.relu((hardest_pos - hardest_neg) / (hardest_neg.mean() + eps) + margin).mean()


def label_indices(labels) -> torch.Tensor:
    names = sorted(set(labels))
    return torch.tensor([names.index(lab) for lab in labels])


def train_projection(features: np.ndarray, labels: list, lengths: list, seed: int, batch: int = 256,
                     lr: float = 1e-3, margin: float = 0.5, unlabeled: np.ndarray = None, pull: float = PULL,
                     trim: float = TRIM, good_label: str = 'good') -> list:
    """Fine-tune only the projection: the encoder is frozen, so its vectors are computed once and
    the projection trains on them (no augmentation), which takes seconds. One run of max(lengths)
    steps; returns the projection as it was after each of lengths steps (the learning rate is
    constant, so each is exactly what a run of that length gives).

    The loss is batch-hard triplet loss on the labels. With `unlabeled` (the encoder vectors of the
    line's unlabeled images, mostly good), a second term pulls them towards the centre of the labeled
    good items, as Deep SAD does (Ruff et al., "Deep semi-supervised anomaly detection", ICLR 2020):
    the few labels then shape where the anomalies go, and the thousands of unlabeled images how
    tightly the product's own variation packs. The `trim` share of each unlabeled batch farthest
    from that centre is left out (the line's own anomalies, about a tenth), and the pull is measured
    against the labeled anomalies' distance to the centre, so it cannot be met by shrinking the space."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    y = label_indices(labels)
    x = torch.as_tensor(features)
    good = torch.tensor([label == good_label for label in labels])
    if unlabeled is not None and (not pull or not len(unlabeled) or good.all() or not good.any()):
        unlabeled = None  # no pull, nothing to pull, or no centre / no anomaly to measure it against
    good_x, anomalies_x = x[good], x[~good]  # the pull's centre and yardstick, every step
    proj = make_projection(x.shape[1])
    opt = torch.optim.Adam(proj.parameters(), lr=lr)
    snapshots = {}
    for step in range(1, max(lengths) + 1):
        idx = torch.as_tensor(rng.permutation(len(x))[:batch])
        loss = batch_hard_triplet_loss(proj(x[idx]), y[idx], margin)
        if unlabeled is not None:
            loss = loss + pull * pull_loss(proj, good_x, anomalies_x,
                                           torch.as_tensor(unlabeled[rng.permutation(len(unlabeled))[:batch]]), trim)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in lengths:
            snapshots[step] = copy.deepcopy(proj).eval()
    return [snapshots[n] for n in lengths]


def pull_loss(proj, good: torch.Tensor, anomalies: torch.Tensor, unlabeled: torch.Tensor, trim: float):
    """Mean cosine distance of the unlabeled batch (less its farthest `trim` share) to the labeled
    good items' centre, over the labeled anomalies' mean distance to it (held constant)."""
    centre = F.normalize(F.normalize(proj(good), dim=1).mean(0), dim=0)
    near = torch.sort(1 - F.normalize(proj(unlabeled), dim=1) @ centre).values[:max(1, int(len(unlabeled) * (1 - trim)))]
    far = (1 - F.normalize(proj(anomalies), dim=1) @ centre).mean().detach().clamp(min=1e-3)
    return near.mean() / far


def _augment(x: torch.Tensor) -> torch.Tensor:
    """Random horizontal flip and +-2 px shift (the usual small-image augmentation)."""
    flip = torch.rand(len(x)) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (2, 2, 2, 2), value=float(x.min()))
    dx, dy = np.random.randint(0, 5, 2)
    return padded[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]


def train_supervised(x: torch.Tensor, labels: list, epochs: int, seed: int, batch: int = 128,
                     lr: float = 2e-3):
    """Supervised baseline from scratch on every label of the labeled split (cross-entropy over
    good + each defect label). Each class weighs in inversely to its count, so a labeled folder
    of mostly good items does not teach it to call everything good. Returns the model and its
    class names."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    names = sorted(set(labels))
    y = torch.tensor([names.index(lab) for lab in labels])
    weight = len(y) / (len(names) * torch.bincount(y, minlength=len(names)).float())
    model = Classifier(len(names))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)
    _fit([model], opt, len(x), epochs, batch, lr,
         lambda idx: F.cross_entropy(model(_augment(x[idx])), y[idx], weight=weight), 'supervised', 'loss')
    return model.eval(), names
