"""Optimizers (AdamW, RAdam) with decay/no-decay parameter groups, per-parameter learning-rate multipliers and
a linear learning-rate warm-up."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

OPTIMIZERS = {
    "adamw": lambda groups, lr, betas, eps: torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps),
    "radam": lambda groups, lr, betas, eps: torch.optim.RAdam(
        groups, lr=lr, betas=betas, eps=eps, decoupled_weight_decay=True
    ),
}


def lr_scale_of(name: str, lr_scales: Mapping[str, float]) -> float:
    """The multiplier of the longest prefix in ``lr_scales`` that ``name`` starts with (dot-separated), else 1."""
    best, scale = -1, 1.0
    for prefix, value in lr_scales.items():
        if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
            best, scale = len(prefix), float(value)
    return scale


def param_groups(modules: Iterable[nn.Module] | Mapping[str, nn.Module], weight_decay: float,
                 lr_scales: Mapping[str, float] | None = None) -> list[dict]:
    """Weight decay on matrices/kernels (ndim ≥ 2) only; biases and norm scales are not decayed.

    ``lr_scales`` maps parameter-name prefixes ``"<model>.<parameter path>"`` (models named by the keys of a
    mapping ``modules``) to learning-rate multipliers, e.g. ``{"net.unet.time_embedding.cond_proj": 20}`` lets a
    zero-initialised layer added to a pretrained network move faster. Every group carries its ``lr_scale``.
    """
    lr_scales = dict(lr_scales or {})
    named = modules.items() if isinstance(modules, Mapping) else ((str(i), m) for i, m in enumerate(modules))
    params = [(f"{mn}.{pn}", p) for mn, m in named for pn, p in m.named_parameters() if p.requires_grad]
    for prefix, value in lr_scales.items():
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"lr_scales[{prefix!r}] must be a number > 0, got {value!r}")
        if not any(n == prefix or n.startswith(prefix + ".") for n, _ in params):
            raise ValueError(f"lr_scales key {prefix!r} names no trainable parameter (keys are "
                             f"'<model>.<parameter path>', e.g. {params[0][0] if params else 'net.weight'!r})")
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for n, p in params:
        groups.setdefault((p.ndim >= 2, lr_scale_of(n, lr_scales)), []).append(p)
    order = sorted(groups, key=lambda k: (not k[0], k[1]))
    return [{"params": groups[k], "weight_decay": weight_decay if k[0] else 0.0, "lr_scale": k[1]} for k in order]


def build_optimizer(modules: Iterable[nn.Module] | Mapping[str, nn.Module], name: str, lr: float,
                    betas: tuple[float, float], eps: float, weight_decay: float,
                    lr_scales: Mapping[str, float] | None = None) -> torch.optim.Optimizer:
    """The optimizer ``name`` (a key of `OPTIMIZERS`) over the trainable parameters of ``modules``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    groups = param_groups(modules, weight_decay, lr_scales)
    opt = OPTIMIZERS[name](groups, lr, betas, eps)
    set_lr(opt, lr)
    return opt


def warmup_lr(step: int, base_lr: float, warmup_steps: int) -> float:
    """lr(step) = base_lr · min(1, (step + 1) / warmup_steps); constant base_lr without warm-up."""
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup_steps)


LR_DECAYS = ("none", "linear", "cosine")


def scheduled_lr(step: int, base_lr: float, warmup_steps: int = 0, decay: str = "none", decay_start: int = 0,
                 total_steps: int = 1, lr_min: float = 0.0) -> float:
    """Warm-up (`warmup_lr`), then constant; with ``decay`` "linear"/"cosine" the rate falls from ``base_lr`` at
    ``decay_start`` to ``lr_min`` at ``total_steps`` (annealing a model trained at a constant rate)."""
    if decay not in LR_DECAYS:
        raise ValueError(f"lr_decay must be one of {LR_DECAYS}, got {decay!r}")
    lr = warmup_lr(step, base_lr, warmup_steps)
    if decay == "none" or step < decay_start:
        return lr
    frac = min(1.0, (step - decay_start) / max(1, total_steps - decay_start))
    shape = 1.0 - frac if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * frac))
    return lr_min + (lr - lr_min) * shape


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr`` × the group's ``lr_scale`` (1 when absent) into every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
