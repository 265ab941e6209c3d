"""An 8×8 / 16×16 digit classifier trained by the project, and the image metrics built on it.

- Fréchet distance (FID-style) between Gaussians fitted to the classifier's penultimate features;
- class accuracy of class-conditional samples (how often the classifier reads back the requested digit);
- the classifier's feature maps as a CTM distance (``soundctm.core.losses.feature_distance``).

Two architectures (``DigitClassifierConfig.arch``): ``"cnn"`` (the bundled classifier) and ``"mlp"`` (the bundled
*judge*, trained apart so that guidance toward the classifier cannot fool its own referee).
Saved as ``config.json`` + ``model.safetensors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from soundctm.metrics.frechet import frechet_distance_of_embeddings
from soundctm.nn.model_dir import load_model_dir, save_model_dir


@dataclass(frozen=True)
class DigitClassifierConfig:
    size: int = 8
    width: int = 32
    feature_dim: int = 64
    num_classes: int = 10
    arch: str = "cnn"  # one of ARCHS: "cnn" two conv stages; "mlp" one hidden layer of 4·width units on the pixels

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")


ARCHS = ("cnn", "mlp")


@dataclass(frozen=True)
class ClassifierTraining:
    steps: int = 1000
    batch: int = 64
    lr: float = 3e-3
    max_shift: int = 1  # random translation by up to this many pixels
    noise: float = 0.05  # std of additive Gaussian noise (robustness to slightly noisy samples)
    seed: int = 0


class DigitClassifier(nn.Module):
    """``[B, 1, S, S]`` in [−1, 1] → logits ``[B, classes]``: two conv stages (S → S/2 → S/4) and an MLP
    (``arch="cnn"``), or an MLP on the flat pixels (``arch="mlp"``)."""

    def __init__(self, config: DigitClassifierConfig = DigitClassifierConfig()):
        super().__init__()
        self.config = c = config
        if c.arch == "mlp":
            self.hidden = nn.Linear(c.size**2, 4 * c.width)
            self.fc = nn.Linear(4 * c.width, c.feature_dim)
        else:
            self.conv1 = nn.Conv2d(1, c.width, 3, padding=1)
            self.conv2 = nn.Conv2d(c.width, 2 * c.width, 3, padding=1)
            self.fc = nn.Linear(2 * c.width * (c.size // 4) ** 2, c.feature_dim)
        self.head = nn.Linear(c.feature_dim, c.num_classes)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations of both conv stages: ``[B, W, S/2, S/2]``, ``[B, 2W, S/4, S/4]`` (mlp: the hidden layer's
        ``[B, 4W]``)."""
        if self.config.arch == "mlp":
            return [F.silu(self.hidden(x.flatten(1)))]
        h1 = F.max_pool2d(F.silu(self.conv1(x)), 2)
        h2 = F.max_pool2d(F.silu(self.conv2(h1)), 2)
        return [h1, h2]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[B, feature_dim]`` (the embedding of the Fréchet distance)."""
        return F.silu(self.fc(self.feature_maps(x)[-1].flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (``soundctm.nn.model_dir``)."""
        return save_model_dir(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> DigitClassifier:
        """Rebuild a net written by `save_pretrained` (or `Trainer.export`), in eval mode."""
        net = load_model_dir(directory, lambda d: cls(DigitClassifierConfig(**d)))
        return net.eval().requires_grad_(False)


def random_shift(x: torch.Tensor, max_shift: int, generator=None) -> torch.Tensor:
    """Translate each image ``[B, C, H, W]`` by a random integer offset in [−max_shift, max_shift]², padding with −1."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, [max_shift] * 4, value=-1.0)
    off = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator).to(x.device)
    rows = (off[:, :1] + torch.arange(h, device=x.device))[:, :, None]  # [B, H, 1]
    cols = (off[:, 1:] + torch.arange(w, device=x.device))[:, None, :]  # [B, 1, W]
    return padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def train_digit_classifier(x: torch.Tensor, y: torch.Tensor, config: DigitClassifierConfig = DigitClassifierConfig(),
                           training: ClassifierTraining = ClassifierTraining()) -> DigitClassifier:
    """Cross-entropy training with shifts and noise on images ``x [N, 1, S, S]``, labels ``y [N]``."""
    if x.shape[-1] != config.size:
        raise ValueError(f"images are {x.shape[-1]}×{x.shape[-1]} but config.size={config.size}")
    g = torch.Generator().manual_seed(training.seed)
    torch.manual_seed(training.seed)
    net = DigitClassifier(config)
    opt = torch.optim.AdamW(net.parameters(), lr=training.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, training.steps)
    for _ in range(training.steps):
        idx = torch.randint(0, len(x), (training.batch,), generator=g)
        xb = random_shift(x[idx], training.max_shift, g)
        xb = xb + training.noise * torch.randn(xb.shape, generator=g)
        loss = F.cross_entropy(net(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval().requires_grad_(False)


@torch.no_grad()
def classifier_accuracy(net: DigitClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of images ``x`` whose argmax class equals ``y``."""
    return float((net(x).argmax(1) == y).float().mean())


@torch.no_grad()
def digit_features(net: DigitClassifier, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Penultimate features of ``x [N, 1, S, S]`` in batches: ``[N, feature_dim]``."""
    return torch.cat([net.features(x[i:i + batch]) for i in range(0, len(x), batch)])


@dataclass(frozen=True)
class DigitScores:
    """Fréchet distance to the reference features and (for conditional samples) class accuracy."""

    frechet: float
    accuracy: float | None
    n: int


def score_digits(net: DigitClassifier, samples: torch.Tensor, reference_features: torch.Tensor,
                 labels: torch.Tensor | None = None) -> DigitScores:
    """Scores of ``samples [N, 1, S, S]`` (clamped to [−1, 1]) against ``reference_features [M, D]``."""
    samples = samples.clamp(-1, 1)
    feats = digit_features(net, samples)
    acc = classifier_accuracy(net, samples, labels) if labels is not None else None
    return DigitScores(frechet_distance_of_embeddings(feats, reference_features), acc, len(samples))


def classifier_feature_maps(net: DigitClassifier):
    """``features(x, sigma) -> list of [B, C, h, w]`` for ``soundctm.core.losses.feature_distance``."""

    def features(x: torch.Tensor, sigma=None) -> list[torch.Tensor]:
        return net.feature_maps(x)

    return features
