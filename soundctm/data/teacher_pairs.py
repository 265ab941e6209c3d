"""The teacher-pairs file: cached guided-teacher PF-ODE solves that the CTM recipe's pair, rollout and GAN terms read.

A safetensors file written by ``recipes/teacher_pairs.py``: ``x_T [N, ...]``, ``x0 [N, ...]`` (the solve's data
end), ``omega [N]`` (the CFG scale), ``caption_index [N]`` (rows of the latent cache's text table), and optionally
the states on an M-step Karras grid ``path [N, M−1, ...]`` at ``path_sigma [M−1]``.
"""

from __future__ import annotations

import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from soundctm.fileio import atomic_path

KEYS = ("x_T", "x0", "omega", "caption_index")
PATH_KEYS = ("path", "path_sigma")


def load_pairs(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The pairs file as tensors ``x_T [N, ...]``, ``x0 [N, ...]``, ``omega [N]``, ``caption_index [N]``."""
    try:
        pairs = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"pairs file {str(path)!r} does not read as safetensors: {err}") from None
    missing = [k for k in KEYS if k not in pairs]
    if missing:
        raise ValueError(f"pairs file {str(path)!r} lacks {missing}: not written by teacher_pairs.py")
    if ("path" in pairs) != ("path_sigma" in pairs):
        raise ValueError(f"pairs file {str(path)!r} has only one of {PATH_KEYS}")
    return pairs


def save_pairs(pairs: dict[str, torch.Tensor], out: str | os.PathLike, metadata: dict[str, str]) -> None:
    """Write a pairs file atomically (a temporary file renamed over ``out``)."""
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in pairs.items()}, str(tmp), metadata=metadata)
