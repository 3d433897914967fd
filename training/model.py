"""Networks: a narrow ResNet18-like encoder for 28x28 gray images, its autoencoder decoder,
the projection head used for triplet fine-tuning, and the supervised classifier head."""
import torch
from torch import nn
from torch.nn import functional as F

# Stage widths of the encoder. ResNet18 uses 64/128/256/512; a 28x28 gray item needs far less,
# and these widths keep the ONNX file under 2 MB while staying fast on oneDNN (multiples of 16).
WIDTHS = (16, 32, 64, 80)
EMBEDDING_DIM = 128
# kNN compares items by the average-pooled outputs of the last two stages (see Encoder.features),
# counted from 0 (ResNet's layer3 and layer4).
FEATURE_STAGES = (2, 3)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with a (projected when needed) identity shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class Encoder(nn.Module):
    """ResNet18 layout (4 stages x 2 basic blocks) with a 3x3 stride-1 stem and no max-pool, as usual
    for 28-32 px inputs; global average pooling then a linear map to the 128-d bottleneck."""

    def __init__(self, in_channels: int = 1, widths: tuple = WIDTHS):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, cin = [], widths[0]
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, EMBEDDING_DIM)
        self.feature_dim = sum(widths[i] for i in FEATURE_STAGES)

    def forward(self, x):
        """The 128-d bottleneck the autoencoder's decoder reconstructs from (and the classifier's input)."""
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))

    def pooled(self, x, stages: tuple, centres: list = None, normalise: bool = True) -> list:
        """The average-pooled output of each of `stages` (0-3), less its centre when given, L2-normalised."""
        h, parts = self.stem(x), []
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i % 2 == 1 and i // 2 in stages:
                v = torch.flatten(self.pool(h), 1)
                if centres is not None:
                    v = v - centres[len(parts)]
                parts.append(F.normalize(v) if normalise else v)
        return parts

    def features(self, x):
        """The vector kNN compares: the pooled outputs of stages 3 and 4 (64 + 80 = 144-d), each
        L2-normalised, side by side, so that their cosine distance is the mean of the two stages'.
        The bottleneck the decoder needs (forward) is worse for kNN: over 24 label draws and seeds
        of the sample line it gave F1 0.771 at 200 labels against 0.813 (training/README.md). As in
        PatchCore and PaDiM, the middle layers keep the local look the last one pools away."""
        return torch.cat(self.pooled(x, FEATURE_STAGES), 1)


class Decoder(nn.Module):
    """Small upsampling decoder: only used to pretrain the encoder, never exported."""

    def __init__(self, size: int = 28, out_channels: int = 1):
        super().__init__()
        self.base = size // 4
        self.fc = nn.Linear(EMBEDDING_DIM, WIDTHS[2] * self.base * self.base)
        self.net = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(WIDTHS[2], WIDTHS[1], 3, 1, 1), nn.BatchNorm2d(WIDTHS[1]), nn.ReLU(),
            nn.Upsample(size=size), nn.Conv2d(WIDTHS[1], WIDTHS[0], 3, 1, 1), nn.BatchNorm2d(WIDTHS[0]), nn.ReLU(),
            nn.Conv2d(WIDTHS[0], out_channels, 3, 1, 1))

    def forward(self, z):
        return self.net(F.relu(self.fc(z)).view(-1, WIDTHS[2], self.base, self.base))


class Embedder(nn.Module):
    """What a bundle exports: image -> vector (the encoder's features, 144-d, then the projection to
    128-d when fine-tuned)."""

    def __init__(self, encoder: Encoder, projection: nn.Module = None):
        super().__init__()
        self.encoder = encoder
        self.projection = projection if projection is not None else nn.Identity()

    def forward(self, x):
        return self.projection(self.encoder.features(x))


def make_projection(in_dim: int) -> nn.Module:
    """The randomly initialised projection layer stacked on the frozen encoder."""
    return nn.Linear(in_dim, EMBEDDING_DIM)


class Classifier(nn.Module):
    """Supervised baseline: the same encoder architecture with a linear class head."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.encoder = Encoder()
        self.head = nn.Linear(EMBEDDING_DIM, num_classes)

    def forward(self, x):
        return self.head(F.relu(self.encoder(x)))
