"""Helpers for recipe tests: a tiny random latent cache (recipes themselves import as `recipes.<name>`)."""

from __future__ import annotations

from pathlib import Path

import torch

from soundctm.audio.text import TextEmbedding
from soundctm.data.cache import LatentCache

ROOT = Path(__file__).resolve().parents[1]


def tiny_cache(path: Path, n: int = 16, channels: int = 4, hw=(8, 12), n_captions: int = 3, dim: int = 16,
               length: int = 5, seed: int = 0, attributes: dict | None = None) -> Path:
    """A latent cache of random latents whose mean depends on the caption (so conditioning is learnable)."""
    g = torch.Generator().manual_seed(seed)
    caption_index = torch.arange(n) % n_captions + 1
    latents = torch.randn(n, channels, *hw, generator=g) * 0.3 + caption_index.float()[:, None, None, None] * 0.2
    tokens = torch.randn(n_captions + 1, length, dim, generator=g)
    mask = torch.ones(n_captions + 1, length, dtype=torch.bool)
    mask[0, 2:] = False
    text = TextEmbedding(tokens, mask, tokens.mean(1))
    captions = [""] + [f"caption {i}" for i in range(n_captions)]
    LatentCache(latents, caption_index, captions, text, attributes or {}, {"source": "test"}).save(path)
    return path
