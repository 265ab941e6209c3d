"""Exact log-likelihoods through the probability-flow ODE (Song et al. 2021, sec. D.2; FFJORD's trace trick).

In u = ln σ the EDM PF-ODE is dx/du = x − D(x, σ) (Karras et al. 2022, eq. 4 times σ). Along a trajectory the
instantaneous change of variables (Chen et al. 2018) gives d log p_σ(x(σ))/du = −∇ₓ·(x − D) = ∇ₓ·D − d, so

    log p_{σ_min}(x) = log p_{σ_max}(x(σ_max)) + ∫_{ln σ_min}^{ln σ_max} (d − ∇ₓ·D(x(u), e^u)) du,

with the prior p_{σ_max} ≈ N(0, σ_max² I). The augmented state [x, ∫(d − ∇·D)] is integrated by an adaptive
Dormand–Prince RK5(4) or fixed-step RK4; Hutchinson probes are drawn once per batch so the ODE stays smooth.
Works with any denoiser, e.g. a CTM student's g(x, t, t) via ``denoiser_from_g``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from soundctm.core.fpe import make_probes, trace_of_jacobian
from soundctm.core.schedule import SIGMA_MAX, SIGMA_MIN
from soundctm.core.utils import rand

# Dormand & Prince (1980) RK5(4) tableau: nodes c, stages a, 5th-order weights b5, 4th-order weights b4.
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


@dataclass
class ODEResult:
    y: torch.Tensor
    nfe: int
    steps: int


def _combine(y: torch.Tensor, h: float, coefs, ks) -> torch.Tensor:
    out = y
    for c, k in zip(coefs, ks):
        if c != 0.0:
            out = out + (h * c) * k
    return out


def rk4(f, y0: torch.Tensor, t0: float, t1: float, n_steps: int = 100) -> ODEResult:
    """Classical fixed-step RK4 for dy/dt = f(t, y) from t0 to t1."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    h, y, t = (t1 - t0) / n_steps, y0, t0
    for _ in range(n_steps):
        k1 = f(t, y)
        k2 = f(t + h / 2, y + h / 2 * k1)
        k3 = f(t + h / 2, y + h / 2 * k2)
        k4 = f(t + h, y + h * k3)
        y, t = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), t + h
    return ODEResult(y, 4 * n_steps, n_steps)


def error_ratio(y0: torch.Tensor, y1: torch.Tensor, err: torch.Tensor, rtol: float, atol: float) -> float:
    """RMS of err / (atol + rtol·max(|y0|, |y1|)) over all entries (≤ 1 means accept)."""
    scale = atol + rtol * torch.maximum(y0.abs(), y1.abs())
    return float((err / scale).pow(2).mean().sqrt())


def dopri5(f, y0: torch.Tensor, t0: float, t1: float, rtol: float = 1e-5, atol: float = 1e-5,
           h0: float | None = None, max_steps: int = 10_000) -> ODEResult:
    """Adaptive Dormand–Prince RK5(4) with FSAL and the standard step controller (one step size per batch)."""
    if rtol <= 0 or atol <= 0:
        raise ValueError(f"rtol and atol must be > 0, got {rtol}, {atol}")
    span = t1 - t0
    h = span / 100 if h0 is None else h0
    y, t, k1, nfe, steps = y0, t0, f(t0, y0), 1, 0
    while (t1 - t) * math.copysign(1, span) > 1e-12 * abs(span):
        if steps >= max_steps:
            raise RuntimeError(f"dopri5 took more than max_steps={max_steps} steps; loosen rtol/atol")
        h = math.copysign(min(abs(h), abs(t1 - t)), span)
        ks = [k1]
        for c, a in zip(_DP_C[1:], _DP_A[1:]):
            ks.append(f(t + c * h, _combine(y, h, a, ks)))
        nfe += 6
        y5 = _combine(y, h, _DP_B5, ks)
        ratio = error_ratio(y, y5, h * sum(float(b5 - b4) * k for b5, b4, k in zip(_DP_B5, _DP_B4, ks)), rtol, atol)
        if ratio <= 1.0:
            y, t, k1, steps = y5, t + h, ks[-1], steps + 1  # FSAL: last stage is f(t + h, y5)
        h = h * min(10.0, max(0.2, 0.9 * (ratio + 1e-16) ** -0.2))
    return ODEResult(y, nfe, steps)


SOLVERS = {"dopri5": dopri5, "rk4": rk4}


# ---- the augmented PF-ODE ----

def prior_log_prob(x: torch.Tensor, sigma_max: float = SIGMA_MAX) -> torch.Tensor:
    """log N(x; 0, σ_max² I) ``[B]``."""
    d = x[0].numel()
    sq = x.reshape(x.shape[0], -1).pow(2).sum(1)
    return -0.5 * sq / sigma_max**2 - 0.5 * d * math.log(2 * math.pi * sigma_max**2)


def denoiser_from_g(g) -> Callable[..., torch.Tensor]:
    """A CTM student's denoiser D(x, σ) = g(x, σ, σ) from its estimate g(x, t, s, **cond)."""
    return lambda x, sigma, **cond: g(x, sigma, sigma, **cond)


def augmented_drift(D, shape: tuple, div: str = "exact", probes: torch.Tensor | None = None, **cond):
    """f(u, [x, ℓ]) = [x − D(x, e^u), d − ∇ₓ·D] on a flat state ``[B, d + 1]`` (u = ln σ)."""
    d = math.prod(shape[1:])

    def f(u: float, state: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = state[:, :d].reshape(shape).detach().requires_grad_(True)
            sigma = torch.full((shape[0],), math.exp(u), dtype=x.dtype, device=x.device)
            den = D(x, sigma, **cond)
            div_d = trace_of_jacobian(den, x, div, probes)
        dx = (x - den).detach().reshape(shape[0], d)
        return torch.cat([dx, (d - div_d.detach())[:, None]], 1)

    return f


@dataclass
class LikelihoodResult:
    """log p_{σ_min}(x) = prior_log_prob + delta_log_prob, all ``[B]`` nats; x_T ``[B, ...]``."""

    log_prob: torch.Tensor
    prior_log_prob: torch.Tensor
    delta_log_prob: torch.Tensor
    x_T: torch.Tensor
    nfe: int

    def bits_per_dim(self, n_bins: int | None = None) -> torch.Tensor:
        """Bits/dim ``[B]`` of the data (see ``bits_per_dim``)."""
        return bits_per_dim(self.log_prob, self.x_T[0].numel(), n_bins)


def pf_ode_log_likelihood(D, x: torch.Tensor, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                          solver: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5, n_steps: int = 100,
                          div: str = "exact", n_probes: int = 1, probe: str = "rademacher", generator=None,
                          **cond) -> LikelihoodResult:
    """log p_{σ_min}(x) ``[B]`` of a denoiser's model by integrating the PF-ODE from σ_min to σ_max.

    ``solver`` "dopri5" (rtol/atol) or "rk4" (n_steps); ``div`` "exact" or "hutchinson" (n_probes fixed probes).
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {solver!r}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    probes = make_probes(x, n_probes, probe, generator) if div == "hutchinson" else None
    f = augmented_drift(D, tuple(x.shape), div, probes, **cond)
    state = torch.cat([x.detach().reshape(x.shape[0], -1), x.new_zeros(x.shape[0], 1)], 1)
    u0, u1 = math.log(sigma_min), math.log(sigma_max)
    opts = {"rtol": rtol, "atol": atol} if solver == "dopri5" else {"n_steps": n_steps}
    out = SOLVERS[solver](f, state, u0, u1, **opts)
    x_T = out.y[:, :-1].reshape(x.shape)
    prior = prior_log_prob(x_T, sigma_max)
    delta = out.y[:, -1]
    return LikelihoodResult(prior + delta, prior, delta, x_T, out.nfe)


# ---- discrete data ----

def dequantize(x_int: torch.Tensor, n_bins: int = 256, generator=None) -> torch.Tensor:
    """Uniform dequantisation of integers in {0..n_bins−1} to [−1, 1]: x = 2(k + u)/n_bins − 1, u ~ U[0, 1)."""
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    if x_int.min() < 0 or x_int.max() > n_bins - 1:
        raise ValueError(f"x_int must lie in [0, {n_bins - 1}]")
    u = rand(x_int.shape, generator, x_int.device)
    return 2 * (x_int.float() + u) / n_bins - 1


def bits_per_dim(log_prob: torch.Tensor, dim: int, n_bins: int | None = None) -> torch.Tensor:
    """−log₂ p / d; with ``n_bins`` the data are dequantised integers scaled to [−1, 1] (adds log₂(n_bins/2)).

    For x = 2(k + u)/n_bins − 1 the bin of k has volume (2/n_bins)^d, so E_u[log p(x)] + d·ln(2/n_bins) is a
    lower bound on log P(k) (Theis et al. 2016).
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    bpd = -log_prob / (dim * math.log(2))
    return bpd if n_bins is None else bpd + math.log2(n_bins / 2)
