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


# ---- random draws: made on the generator's device, then moved ----
# One rule for every draw in the code base: the numbers come from the generator where it lives (CPU or CUDA) and
# the result is moved to the tensors' device, so a seed gives the same numbers wherever the model runs and a CPU
# generator never meets CUDA tensors (or the reverse). Without a generator the draw is made on ``device`` directly.


def _draw_device(generator: torch.Generator | None, device) -> torch.device | None:
    return generator.device if generator is not None else device


def _moved(x: torch.Tensor, device) -> torch.Tensor:
    return x if device is None else x.to(device)


def randn(shape, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """Standard normal draws of ``shape`` from ``generator`` (on its device), placed on ``device``."""
    return _moved(torch.randn(shape, generator=generator, device=_draw_device(generator, device), dtype=dtype), device)


def rand(shape, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """Uniform [0, 1) draws of ``shape`` from ``generator`` (on its device), placed on ``device``."""
    return _moved(torch.rand(shape, generator=generator, device=_draw_device(generator, device), dtype=dtype), device)


def randint(low: int, high: int, shape, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Integers uniform in [low, high) of ``shape`` from ``generator`` (on its device), placed on ``device``."""
    return _moved(torch.randint(low, high, shape, generator=generator, device=_draw_device(generator, device)), device)


def multinomial(weights: torch.Tensor, n: int, replacement: bool = False, generator: torch.Generator | None = None,
                device=None) -> torch.Tensor:
    """``n`` category indices per row of ``weights`` (moved to the generator's device to draw), placed on ``device``."""
    w = weights.to(_draw_device(generator, weights.device))
    return _moved(torch.multinomial(w, n, replacement, generator=generator), device)
