"""Probability-flow ODE solvers for the EDM/VE process dx/dσ = (x − D(x, σ))/σ (Karras et al. 2022, eq. 4).

Each step takes a denoiser and per-sample noise levels ``[B]``; ``solve`` integrates from t to u.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from soundctm.core.schedule import interpolate_sigmas, karras_interp
from soundctm.core.utils import append_dims, as_sigma

Denoiser = Callable[..., torch.Tensor]


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """ODE slope dx/dσ = (x − D(x, σ))/σ."""
    return (x - denoised) / append_dims(sigma, x.ndim)


def euler_step(D: Denoiser, x, sigma, sigma_next, **cond) -> torch.Tensor:
    """One Euler step from σ to σ_next."""
    sigma, sigma_next = as_sigma(sigma, x), as_sigma(sigma_next, x)
    d = to_d(x, sigma, D(x, sigma, **cond))
    return x + d * append_dims(sigma_next - sigma, x.ndim)


def heun_step(D: Denoiser, x, sigma, sigma_next, **cond) -> torch.Tensor:
    """EDM Algorithm 1 step: Euler predictor, trapezoidal corrector (skipped where σ_next = 0)."""
    sigma, sigma_next = as_sigma(sigma, x), as_sigma(sigma_next, x)
    h = append_dims(sigma_next - sigma, x.ndim)
    d = to_d(x, sigma, D(x, sigma, **cond))
    x_euler = x + d * h
    last = sigma_next == 0
    if last.all():
        return x_euler
    safe_next = torch.where(last, torch.ones_like(sigma_next), sigma_next)
    d_next = to_d(x_euler, safe_next, D(x_euler, safe_next, **cond))
    x_heun = x + (d + d_next) / 2 * h
    return torch.where(append_dims(last, x.ndim), x_euler, x_heun)


def dpmpp_2m_step(D: Denoiser, x, sigma, sigma_next, prev: tuple | None = None, **cond):
    """DPM-Solver++(2M) step (Lu et al. 2022, Alg. 2) in λ = −ln σ.

    ``prev`` is ``(denoised_prev, sigma_prev)`` from the previous step or None (first-order step).
    Returns ``(x_next, (denoised, sigma))`` so the caller threads the history explicitly.
    """
    sigma, sigma_next = as_sigma(sigma, x), as_sigma(sigma_next, x)
    denoised = D(x, sigma, **cond)
    last = sigma_next == 0
    safe_next = torch.where(last, torch.ones_like(sigma_next), sigma_next)
    h = sigma.log() - safe_next.log()  # λ_next − λ
    ratio = append_dims(safe_next / sigma, x.ndim)
    d = denoised
    if prev is not None:
        denoised_prev, sigma_prev = prev
        r = (sigma_prev.log() - sigma.log()) / h  # h_prev / h
        coef = append_dims(1 / (2 * r), x.ndim)
        d = (1 + coef) * denoised - coef * denoised_prev
    x_next = ratio * x - (ratio - 1) * d  # σ'/σ·x − (e^{−h} − 1)·D
    x_next = torch.where(append_dims(last, x.ndim), denoised, x_next)
    return x_next, (denoised, sigma)


STEPS = {"euler": euler_step, "heun": heun_step}
METHODS = ("euler", "heun", "dpmpp_2m")


def solve_path(D: Denoiser, x: torch.Tensor, path: torch.Tensor, method: str = "heun", callback=None,
               **cond) -> torch.Tensor:
    """Integrate the PF-ODE along a σ path ``[n+1]`` or per-sample ``[n+1, B]`` with the named method."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    prev = None
    for i in range(len(path) - 1):
        sigma, sigma_next = as_sigma(path[i], x), as_sigma(path[i + 1], x)
        if method == "dpmpp_2m":
            x, prev = dpmpp_2m_step(D, x, sigma, sigma_next, prev, **cond)
        else:
            x = STEPS[method](D, x, sigma, sigma_next, **cond)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next})
    return x


def solve(D: Denoiser, x: torch.Tensor, t, u, n_steps: int | torch.Tensor, method: str = "heun",
          rho: float = 7.0, **cond) -> torch.Tensor:
    """Solve the PF-ODE from σ = t to σ = u (both ``[B]`` or scalars) in n_steps Karras-spaced steps.

    ``n_steps`` may be a ``[B]`` tensor: each sample takes its own number of steps along its own Karras path
    (as CTM's k teacher steps from t_n to t_{n+k}); iteration i evaluates only the samples with more than i
    steps, so the cost is the sum of the steps, not batch × max.
    """
    t, u = as_sigma(t, x), as_sigma(u, x)
    if isinstance(n_steps, int):
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        return solve_path(D, x, interpolate_sigmas(t, u, n_steps, rho), method, **cond)
    if method == "dpmpp_2m":
        raise ValueError("per-sample n_steps supports method 'euler' or 'heun'")
    n_steps = n_steps.to(x.device)
    if (n_steps < 1).any():
        raise ValueError("every n_steps must be >= 1")
    frac = (torch.arange(int(n_steps.max()) + 1, device=x.device)[:, None] / n_steps[None]).clamp(max=1)
    path = karras_interp(t[None], u[None], frac, rho)
    for i in range(len(path) - 1):
        idx = (i < n_steps).nonzero().squeeze(1)  # only samples that still have steps to take
        sub = index_batch(cond, idx, x.shape[0])
        x = x.index_copy(0, idx, STEPS[method](D, x[idx], path[i, idx], path[i + 1, idx], **sub))
    return x


def index_batch(cond: dict, idx: torch.Tensor, batch: int) -> dict:
    """Select rows ``idx`` of every tensor in ``cond`` whose leading dim is the batch size."""
    return {k: v[idx] if torch.is_tensor(v) and v.ndim > 0 and v.shape[0] == batch else v for k, v in cond.items()}
