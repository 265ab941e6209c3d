"""Small MLP backbones for low-dimensional toy data (2-D mixtures, checkerboards, swiss rolls).

Raw networks in the preconditioning contracts of ``soundctm.core.precond``:
one-time ``F(x_in, c_noise)`` for denoisers and two-time ``F(x_in, c_noise_t, c_noise_s)`` for CTM students.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ToyMLPConfig:
    dim: int = 2
    hidden: int = 256
    depth: int = 4
    n_freqs: int = 16
    two_time: bool = False


def fourier_features(c: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """[cos(2^k·c), sin(2^k·c)] for k = 0..n_freqs−1 (geometric frequencies, clipped at 2^7): ``[B, 2·n_freqs]``."""
    freqs = 2.0 ** torch.linspace(-2, 7, n_freqs, device=c.device, dtype=c.dtype)
    ang = c[:, None] * freqs[None] * math.pi
    return torch.cat([ang.cos(), ang.sin()], 1)


class ToyMLP(nn.Module):
    """Residual MLP with Fourier embeddings of c_noise (and of c_noise_s for a two-time CTM network)."""

    def __init__(self, config: ToyMLPConfig = ToyMLPConfig()):
        super().__init__()
        self.config = config
        n_emb = 2 * config.n_freqs * (2 if config.two_time else 1)
        self.inp = nn.Linear(config.dim + n_emb, config.hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(config.hidden, config.hidden)) for _ in range(config.depth)
        )
        self.emb = nn.ModuleList(nn.Linear(n_emb, config.hidden) for _ in range(config.depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(config.hidden, config.dim))

    def embed(self, c_noise_t: torch.Tensor, c_noise_s: torch.Tensor | None) -> torch.Tensor:
        e = fourier_features(c_noise_t, self.config.n_freqs)
        if self.config.two_time:
            if c_noise_s is None:
                raise ValueError("a two-time ToyMLP needs c_noise_s")
            e = torch.cat([e, fourier_features(c_noise_s, self.config.n_freqs)], 1)
        return e

    def forward(self, x: torch.Tensor, c_noise_t: torch.Tensor, c_noise_s: torch.Tensor | None = None, **_):
        e = self.embed(c_noise_t, c_noise_s)
        h = self.inp(torch.cat([x, e], 1))
        for block, emb in zip(self.blocks, self.emb):
            h = h + block(h + emb(e))
        return self.out(h)

    def config_dict(self) -> dict:
        return asdict(self.config)
