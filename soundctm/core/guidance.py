"""Guidance as wrappers: each takes a callable and returns a new callable of the same contract.

``classifier_free_guidance`` works for denoisers ``D(x, sigma, **cond)`` and for CTM jumps ``G(x, t, s, **cond)``
alike (any number of time arguments): Ho & Salimans (2022), D_ω = D_∅ + ω·(D_c − D_∅). With ω = 1 it returns the
conditional output without evaluating the unconditional branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soundctm.core.utils import append_dims, as_sigma


def _pad_to(v: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad dim 1 (a sequence axis, e.g. text tokens or masks) up to ``length``."""
    pad = [0, 0] * (v.ndim - 2) + [0, length - v.shape[1]]
    return F.pad(v, pad)


def _pair(c: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Stack a conditional and an unconditional tensor along the batch, broadcasting u and padding dim 1."""
    u = u.expand(c.shape[0], *u.shape[1:]) if u.shape[0] == 1 else u
    if c.ndim >= 2 and c.shape[1] != u.shape[1]:
        length = max(c.shape[1], u.shape[1])
        c, u = _pad_to(c, length), _pad_to(u, length)
    if c.shape[1:] != u.shape[1:]:
        raise ValueError(f"conditional and unconditional shapes differ: {tuple(c.shape)} vs {tuple(u.shape)}")
    return torch.cat([c, u.to(c.dtype)])


def double_cond(cond: dict, uncond: dict, batch: int) -> dict:
    """Batch [cond; uncond]: keys in ``uncond`` take its values for the second half, other tensors are repeated."""
    out = {}
    for k, v in cond.items():
        if k in uncond:
            out[k] = _pair(v, uncond[k])
        elif torch.is_tensor(v) and v.ndim > 0 and v.shape[0] == batch:
            out[k] = torch.cat([v, v])
        else:
            out[k] = v
    return out


def classifier_free_guidance(fn, scale, uncond: dict):
    """Return fn_ω(x, *times, **cond) = fn_∅ + ω·(fn_c − fn_∅), both branches in one batch.

    ``scale`` is a float, a ``[B]`` tensor (per-sample ω), or the name of a condition holding ω per call (so ω
    follows the batch when a solver evaluates a subset of samples; the condition is still passed on to fn).
    ``uncond`` maps condition names to their unconditional values (batch 1 or B), e.g. the empty caption's.
    """
    if not torch.is_tensor(scale) and not isinstance(scale, str) and float(scale) == 1.0:
        return fn

    def guided(x, *times, **cond):
        b = x.shape[0]
        w = as_sigma(cond[scale] if isinstance(scale, str) else scale, x)
        both = fn(torch.cat([x, x]), *(torch.cat([as_sigma(t, x)] * 2) for t in times),
                  **double_cond(cond, uncond, b))
        out_c, out_u = both[:b], both[b:]
        return out_u + append_dims(w, x.ndim) * (out_c - out_u)

    return guided
