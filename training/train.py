"""Training loops: autoencoder pretraining, triplet fine-tuning of the projection on frozen
encoder vectors, and the supervised classifier baseline."""
import math
import time

import numpy as np
import torch
from torch.nn import functional as F

from .model import Classifier, Decoder, Encoder, make_projection


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


def pretrain_autoencoder(x: torch.Tensor, epochs: int, seed: int, batch: int = 128, lr: float = 2e-3) -> Encoder:
    """Unsupervised: reconstruct normalised images through the 128-d bottleneck (MSE)."""
    torch.manual_seed(seed)
    encoder, decoder = Encoder(), Decoder(size=x.shape[-1])
    params = list(encoder.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    _fit([encoder, decoder], opt, len(x), epochs, batch, lr,
         lambda idx: F.mse_loss(decoder(encoder(x[idx])), x[idx]), 'autoencoder', 'mse')
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


def train_projection(features: np.ndarray, labels: list, steps: int, seed: int, batch: int = 256,
                     lr: float = 1e-3, margin: float = 0.5) -> torch.nn.Module:
    """Fine-tune only the projection: the encoder is frozen, so its vectors are computed once and
    the projection trains on them (no augmentation), which takes seconds."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    names = sorted(set(labels))
    y = torch.tensor([names.index(lab) for lab in labels])
    x = torch.as_tensor(features)
    proj = make_projection()
    opt = torch.optim.Adam(proj.parameters(), lr=lr)
    for step in range(steps):
        idx = torch.as_tensor(rng.permutation(len(x))[:batch])
        loss = batch_hard_triplet_loss(proj(x[idx]), y[idx], margin)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return proj.eval()


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
