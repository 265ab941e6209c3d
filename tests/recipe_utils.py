"""Helpers for recipe tests: load a recipe script as a module, build a tiny random latent cache."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from soundctm.audio.text import TextEmbedding
from soundctm.data.cache import LatentCache

ROOT = Path(__file__).resolve().parents[1]


def _load_script(folder: str, name: str, module_name: str):
    """Import ``<folder>/<name>.py`` as the module ``module_name`` (once per process)."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_recipe(name: str):
    """Import ``recipes/<name>.py`` as the module ``name`` (recipes are scripts, not a package, and import one
    another by that name)."""
    return _load_script("recipes", name, name)


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as the module ``benchmark_<name>``: both folders hold a ``toy2d.py``, and
    one name for both would hand a test the other script."""
    return _load_script("benchmarks", name, f"benchmark_{name}")


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
