"""Samplers: pure functions over a denoiser or a CTM jump; no hidden state, a ``callback`` for progress."""

from __future__ import annotations

import torch

from soundctm.core.solvers import solve_path
from soundctm.core.utils import as_sigma, randn


def sample_ode(D, x: torch.Tensor, sigmas: torch.Tensor, method: str = "heun", callback=None,
               **cond) -> torch.Tensor:
    """Teacher sampling: integrate the PF-ODE along ``sigmas`` (descending; end with 0 for the data end).

    ``x`` is the initial state at sigmas[0], i.e. already scaled: x_T = σ_max·z.
    """
    return solve_path(D, x, sigmas, method=method, callback=callback, **cond)


def gamma_target(t_next: torch.Tensor, gamma: float, sigma_end: torch.Tensor) -> torch.Tensor:
    """CTM γ-sampling (Kim et al. 2024, Alg. 1): jump to s = √(1−γ²)·t_next, kept ≥ the final σ."""
    return torch.clamp(t_next * (1 - gamma**2) ** 0.5, min=float(sigma_end))


def sample_ctm(G, x: torch.Tensor, sigmas: torch.Tensor, gamma: float = 0.0, generator=None, callback=None,
               **cond) -> torch.Tensor:
    """CTM γ-sampling along ``sigmas`` = [T = t_0 > t_1 > … > t_n = σ_min]; n = number of G evaluations.

    Each step jumps from t_i to s = √(1−γ²)·t_{i+1} and re-noises to t_{i+1} with fresh noise of std
    √(t_{i+1}² − s²); the last step jumps straight to t_n. γ = 0 is deterministic (no noise is drawn after x_T),
    γ = 1 is consistency-model multistep sampling. ``x`` is x_T = T·z. The noise is drawn on ``generator``'s device
    and moved to x's, so a CPU generator gives the same samples on every device.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if len(sigmas) < 2:
        raise ValueError("sigmas needs at least 2 points (start and end)")
    n = len(sigmas) - 1
    for i in range(n):
        t, t_next = sigmas[i], sigmas[i + 1]
        s = t_next if i == n - 1 else gamma_target(t_next, gamma, sigmas[-1])
        x = G(x, as_sigma(t, x), as_sigma(s, x), **cond)
        noise_std = float((t_next**2 - s**2).clamp(min=0).sqrt())
        if noise_std > 0:
            x = x + noise_std * randn(x.shape, generator, x.device, x.dtype)
        if callback is not None:
            callback({"i": i, "x": x, "t": t, "s": s, "t_next": t_next})
    return x


def sample_ctm_score(g, x: torch.Tensor, sigmas: torch.Tensor, method: str = "heun", callback=None,
                     **cond) -> torch.Tensor:
    """Score-based sampling with the student's own denoiser g(x, σ, σ): the PF-ODE solved as for a teacher."""

    def denoiser(x_, sigma, **c):
        return g(x_, sigma, sigma, **c)

    return sample_ode(denoiser, x, sigmas, method=method, callback=callback, **cond)
