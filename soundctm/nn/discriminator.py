"""A light discriminator on multi-level features of the frozen teacher UNet (CTM's optional GAN term)."""

from __future__ import annotations

import torch
from torch import nn


class FeatureDiscriminator(nn.Module):
    """One small conv head per feature level; logits ``[B, n_levels]`` (spatially averaged per level)."""

    def __init__(self, channels: list[int], hidden: int = 32):
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, hidden, 3, padding=1), nn.SiLU(), nn.Conv2d(hidden, 1, 1)) for c in channels
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.heads):
            raise ValueError(f"expected {len(self.heads)} feature levels, got {len(features)}")
        return torch.stack([head(f).mean((1, 2, 3)) for head, f in zip(self.heads, features)], 1)
