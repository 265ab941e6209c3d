"""Exponential moving averages of model weights: θ_ema ← β·θ_ema + (1 − β)·θ after every optimizer step.

Several decays per model are allowed; each average is a full frozen copy of the module, so it can be called
like the model itself (e.g. the CTM stop-gradient target θ⁻ = EMA 0.999, read every step).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn


def ema_key(name: str, decay: float) -> str:
    """Name of the EMA of model ``name`` with ``decay`` in the trainer's model dict, e.g. ``student_ema0.999``."""
    return f"{name}_ema{decay:g}"


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with ``requires_grad=False`` everywhere."""
    clone = copy.deepcopy(model).eval()
    clone.requires_grad_(False)
    return clone


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """θ_ema ← θ_ema + (1 − β)(θ − θ_ema) for float parameters/buffers; other buffers are copied."""
    ema_params, params = list(ema_model.parameters()), [p.detach() for p in model.parameters()]
    if all(a.dtype == b.dtype and a.device == b.device for a, b in zip(ema_params, params)):
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)  # one fused call instead of one per tensor
    else:
        for p_ema, p in zip(ema_params, params):
            p_ema.lerp_(p.to(p_ema.dtype), 1.0 - decay)
    for b_ema, b in zip(ema_model.buffers(), model.buffers()):
        if b_ema.is_floating_point():
            b_ema.lerp_(b.to(b_ema.dtype), 1.0 - decay)
        else:
            b_ema.copy_(b)


def warmup_decay(decay: float, step: int) -> float:
    """min(β, (1 + n)/(10 + n)): 0.1 at the first update, so the random init is forgotten within a few steps."""
    return min(decay, (1.0 + step) / (10.0 + step))


@dataclass
class EMATrack:
    """One running average: ``module`` ≈ EMA_decay(models[source])."""

    source: str
    decay: float
    module: nn.Module

    @property
    def key(self) -> str:
        return ema_key(self.source, self.decay)


class EMA:
    """EMAs with every decay in ``decays`` for every module in ``models``."""

    def __init__(self, models: dict[str, nn.Module], decays: tuple[float, ...]):
        for d in decays:
            if not 0.0 <= d < 1.0:
                raise ValueError(f"ema decay must be in [0, 1), got {d}")
        self.tracks = {t.key: t for t in (EMATrack(n, d, frozen_copy(m)) for n, m in models.items() for d in decays)}

    def update(self, models: dict[str, nn.Module], step: int | None = None) -> None:
        """Move every average one step towards the current weights of its source model.

        With ``step`` (optimizer steps done before this update) the decay is warmed up, `warmup_decay`.
        """
        for track in self.tracks.values():
            decay = track.decay if step is None else warmup_decay(track.decay, step)
            ema_update(track.module, models[track.source], decay)

    def to(self, device: torch.device) -> EMA:
        for track in self.tracks.values():
            track.module.to(device)
        return self

    @torch.no_grad()
    def reset(self, models: dict[str, nn.Module]) -> None:
        """Set every average equal to the current weights of its source model."""
        for track in self.tracks.values():
            track.module.load_state_dict(models[track.source].state_dict())

    def modules(self) -> dict[str, nn.Module]:
        """``{ema_key: module}`` of all averages."""
        return {key: t.module for key, t in self.tracks.items()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat ``{"<ema_key>/<param name>": tensor}`` (safetensors-ready)."""
        return {f"{key}/{k}": v for key, t in self.tracks.items() for k, v in t.module.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of `state_dict`; every track must be present (strict)."""
        for key, track in self.tracks.items():
            prefix = f"{key}/"
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not sub:
                raise ValueError(f"checkpoint has no EMA {key!r}; it has {sorted({k.split('/')[0] for k in state})}")
            track.module.load_state_dict(sub, strict=True)
