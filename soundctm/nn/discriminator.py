"""A light discriminator on multi-level features of the frozen teacher UNet (CTM's optional GAN term)."""

from __future__ import annotations

import torch
from torch import nn

HEADS = ("conv", "stats")


class PooledStatsHead(nn.Module):
    """Logit from one feature level's per-channel mean and log-std over positions: ``[B, C, H, W] → [B]``.

    Sees the level's channel statistics only, not where along time they occur: the statistics on which a logistic
    probe fitted offline tells the student's jumps from the teacher's solutions above chance
    (benchmarks/feature_probe.py, which also measures how fast this head learns them online)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(2 * channels), nn.Linear(2 * channels, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        flat = f.flatten(2)
        stats = torch.cat([flat.mean(-1), 0.5 * torch.log(flat.var(-1) + 1e-8)], 1)
        return self.net(stats).squeeze(1)


class ConvHead(nn.Sequential):
    """A 3×3 conv, SiLU and a 1×1 conv on one feature level, averaged over positions: ``[B, C, H, W] → [B]``."""

    def __init__(self, channels: int, hidden: int):
        super().__init__(nn.Conv2d(channels, hidden, 3, padding=1), nn.SiLU(), nn.Conv2d(hidden, 1, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return super().forward(f).mean((1, 2, 3))


class FeatureDiscriminator(nn.Module):
    """One small head per feature level (``head``: ``"conv"`` → ``ConvHead``, ``"stats"`` → ``PooledStatsHead``);
    logits ``[B, n_levels]``."""

    def __init__(self, channels: list[int], hidden: int = 32, head: str = "conv"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        cls = PooledStatsHead if head == "stats" else ConvHead
        self.heads = nn.ModuleList(cls(c, hidden) for c in channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.heads):
            raise ValueError(f"expected {len(self.heads)} feature levels, got {len(features)}")
        return torch.stack([head(f) for head, f in zip(self.heads, features)], 1)
