"""Small tensor helpers shared by the core modules."""

from __future__ import annotations

import torch


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so a ``[B]`` tensor broadcasts against a ``[B, ...]`` tensor of ``ndim`` dims."""
    if v.ndim > ndim:
        raise ValueError(f"append_dims: tensor has {v.ndim} dims, more than the target {ndim}")
    return v.reshape(*v.shape, *([1] * (ndim - v.ndim)))


def as_sigma(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Turn a scalar or ``[B]`` noise level into a ``[B]`` tensor on x's device and dtype."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or have shape [{x.shape[0]}], got {tuple(sigma.shape)}")
    return sigma
