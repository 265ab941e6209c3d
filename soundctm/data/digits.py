"""The 8×8 hand-written digits shipped offline with scikit-learn (1,797 grey-scale images, 10 classes).

Images are returned as ``[N, 1, S, S]`` float tensors scaled from the 0..16 pixel range to [−1, 1] (S = 8, or
16 with bilinear upsampling), with a fixed stratified train / held-out split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

NUM_CLASSES = 10
SIZES = (8, 16)


@dataclass(frozen=True)
class DigitsConfig:
    holdout: float = 0.3  # fraction of every class held out for evaluation
    split_seed: int = 0
    size: int = 8  # 8 (native) or 16 (bilinear upsampling)


@dataclass(frozen=True)
class DigitSplit:
    """Train and held-out images ``[N, 1, S, S]`` in [−1, 1] with labels ``[N]`` (int64)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def load_digit_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as ``[N, 8, 8]`` floats in 0..16 and labels ``[N]``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.as_tensor(d.images, dtype=torch.float32), torch.as_tensor(d.target, dtype=torch.long)


def to_unit_range(images: torch.Tensor, size: int = 8) -> torch.Tensor:
    """``[N, 8, 8]`` pixels in 0..16 → ``[N, 1, size, size]`` in [−1, 1]."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size}")
    x = images[:, None] / 8.0 - 1.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
    return x


def stratified_holdout(labels: torch.Tensor, holdout: float, seed: int) -> torch.Tensor:
    """Boolean mask ``[N]``: round(holdout·n_c) random items of every class c are held out."""
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must lie in (0, 1), got {holdout}")
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique():
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        mask[idx[:round(holdout * len(idx))]] = True
    return mask


def load_digit_split(config: DigitsConfig = DigitsConfig()) -> DigitSplit:
    """The train / held-out split of the scikit-learn digits described by ``config``."""
    images, labels = load_digit_arrays()
    x = to_unit_range(images, config.size)
    test = stratified_holdout(labels, config.holdout, config.split_seed)
    return DigitSplit(x[~test], labels[~test], x[test], labels[test])
