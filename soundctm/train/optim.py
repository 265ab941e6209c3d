"""Optimizers (AdamW, RAdam) with decay/no-decay parameter groups and a linear learning-rate warm-up."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

OPTIMIZERS = {
    "adamw": lambda groups, lr, betas, eps: torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps),
    "radam": lambda groups, lr, betas, eps: torch.optim.RAdam(
        groups, lr=lr, betas=betas, eps=eps, decoupled_weight_decay=True
    ),
}


def param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict]:
    """Weight decay on matrices/kernels (ndim ≥ 2) only; biases and norm scales are not decayed."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(modules: Iterable[nn.Module], name: str, lr: float, betas: tuple[float, float],
                    eps: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer ``name`` (a key of `OPTIMIZERS`) over the trainable parameters of ``modules``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](param_groups(modules, weight_decay), lr, betas, eps)


def warmup_lr(step: int, base_lr: float, warmup_steps: int) -> float:
    """lr(step) = base_lr · min(1, (step + 1) / warmup_steps); constant base_lr without warm-up."""
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup_steps)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr`` into every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
