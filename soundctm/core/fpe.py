"""The score Fokker–Planck equation (score FPE) of the EDM/VE process and its residual.

FP-Diffusion (Lai et al., ICML 2023) observes that the scores of the noised data densities p_t are tied together
by a PDE, and that scores learned by denoising score matching violate it. For the EDM/VE process used throughout
soundctm, x_σ = x0 + σ·n, the time is t = σ and the forward SDE is dx = g(t) dw with f = 0 and
g(t)² = d(σ²)/dt = 2t. Its Fokker–Planck equation and the equation it implies for q = log p_t are

    ∂ₜp = ½g²Δp = t·Δp,
    ∂ₜq = t·(Δq + ‖∇q‖²)                 (divide by p: Δp/p = Δq + ‖∇q‖²).

Taking ∇ₓ of the second line gives the score FPE for s = ∇ₓq; it is the f = 0, g² = 2t case of the general
∂ₜs = ∇ₓ[½g²(∇·s + ‖s‖²) − ⟨f, s⟩ − ∇·f] for dx = f dt + g dw (Lai et al. 2023):

    ∂ₜs(x, t) = t·∇ₓ( ∇ₓ·s(x, t) + ‖s(x, t)‖² ).

``score_fpe_residual`` returns r = ∂ₜs − t·∇ₓ(∇·s + ‖s‖²) for x of any shape ``[B, ...]`` (divergence and norm
over all non-batch dims). Near the data s ~ 1/σ and both sides scale like 1/σ², so σ²·r is the scale-free
residual the regulariser penalises. The scalar form ψ = σ²·(∇·s + ‖s‖²) equals σ·∂ₜlog p_σ for the exact score;
since ∫Δp = 0, its mean under p_σ vanishes (E_{p_σ}[∇·s + ‖s‖²] = 0), a batch-level check of the same law.

Derivatives: ∇ₓ·s exactly (one batched vector–Jacobian product per input dimension, for small dimension) or by
Hutchinson's estimator vᵀ(∂s/∂x)v with Rademacher or Gaussian probes v (E[vvᵀ] = I, unbiased); ∂ₜs by autograd
through the σ input (a forward-mode product done with two reverse passes) or by a central finite difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from soundctm.core.utils import append_dims, as_sigma, randint, randn

ScoreFn = Callable[..., torch.Tensor]


def score_from_denoiser(D, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
    """s(x, σ) = (D(x, σ) − x)/σ² (Tweedie's formula for x_σ = x0 + σn)."""
    sigma = as_sigma(sigma, x)
    return (D(x, sigma, **cond) - x) / append_dims(sigma, x.ndim) ** 2


def denoiser_score(D) -> ScoreFn:
    """The score function s(x, σ, **cond) of a denoiser D(x, σ, **cond)."""
    return lambda x, sigma, **cond: score_from_denoiser(D, x, sigma, **cond)


# ---- probes for Hutchinson's trace estimator ----

def rademacher_probes(x: torch.Tensor, n: int, generator=None) -> torch.Tensor:
    """n probes ``[n, B, ...]`` with i.i.d. ±1 entries."""
    v = randint(0, 2, (n, *x.shape), generator, x.device)
    return (2 * v - 1).to(x.dtype)


def gaussian_probes(x: torch.Tensor, n: int, generator=None) -> torch.Tensor:
    """n probes ``[n, B, ...]`` with i.i.d. N(0, 1) entries."""
    return randn((n, *x.shape), generator, x.device, x.dtype)


PROBES = {"rademacher": rademacher_probes, "gaussian": gaussian_probes}


def make_probes(x: torch.Tensor, n: int = 1, kind: str = "rademacher", generator=None) -> torch.Tensor:
    """Probe vectors ``[n, B, ...]`` of the named kind (kept fixed by the caller where smoothness matters)."""
    if kind not in PROBES:
        raise ValueError(f"probe kind must be one of {sorted(PROBES)}, got {kind!r}")
    if n < 1:
        raise ValueError(f"n_probes must be >= 1, got {n}")
    return PROBES[kind](x, n, generator)


# ---- divergence ----

def _sum_dims(v: torch.Tensor, start: int) -> torch.Tensor:
    return v.reshape(*v.shape[:start], -1).sum(-1)


def jacobian_trace(out: torch.Tensor, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Exact Σ_i ∂out_i/∂x_i ``[B]`` from one batched VJP over the d basis vectors (out = f(x), same shape)."""
    d = x[0].numel()
    basis = torch.eye(d, dtype=x.dtype, device=x.device).reshape(d, 1, *x.shape[1:]).expand(d, *x.shape)
    (jac,) = torch.autograd.grad(out, x, basis, is_grads_batched=True, create_graph=create_graph)
    diag = jac.reshape(d, x.shape[0], d).diagonal(dim1=0, dim2=2)  # [B, d]: ∂out_i/∂x_i
    return diag.sum(1)


def hutchinson_trace(out: torch.Tensor, x: torch.Tensor, probes: torch.Tensor,
                     create_graph: bool = False) -> torch.Tensor:
    """Hutchinson (1989): tr J ≈ mean_k v_kᵀ J v_k ``[B]`` with probes ``[n, B, ...]`` (E[vvᵀ] = I)."""
    (vjp,) = torch.autograd.grad(out, x, probes, is_grads_batched=True, create_graph=create_graph)
    return _sum_dims(vjp * probes, 2).mean(0)


def trace_of_jacobian(out: torch.Tensor, x: torch.Tensor, method: str = "exact", probes: torch.Tensor | None = None,
                      create_graph: bool = False) -> torch.Tensor:
    """∇ₓ·f ``[B]`` of an already computed out = f(x): ``method`` "exact" or "hutchinson" (needs ``probes``)."""
    if method == "exact":
        return jacobian_trace(out, x, create_graph)
    if method == "hutchinson":
        if probes is None:
            raise ValueError("method 'hutchinson' needs probes [n, B, ...] (see make_probes)")
        return hutchinson_trace(out, x, probes, create_graph)
    raise ValueError(f"divergence method must be 'exact' or 'hutchinson', got {method!r}")


def divergence(f, x: torch.Tensor, method: str = "exact", probes: torch.Tensor | None = None,
               create_graph: bool = False) -> torch.Tensor:
    """∇ₓ·f(x) ``[B]`` of a vector field f: ``[B, ...] -> [B, ...]`` acting sample-wise."""
    with torch.enable_grad():
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        return trace_of_jacobian(f(x), x, method, probes, create_graph)


# ---- time derivative of the score ----

def sigma_derivative(out: torch.Tensor, sigma: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """∂out/∂σ (same shape as out) for per-sample σ ``[B]``: a JVP from two reverse passes (double-backward)."""
    u = torch.zeros_like(out, requires_grad=True)
    (vjp,) = torch.autograd.grad(out, sigma, u, create_graph=True)  # uᵀ ∂out/∂σ, linear in u
    (jvp,) = torch.autograd.grad(vjp, u, torch.ones_like(vjp), create_graph=create_graph)
    return jvp


def score_time_derivative(score_fn: ScoreFn, x: torch.Tensor, sigma, method: str = "autograd", step: float = 1e-3,
                          create_graph: bool = False, **cond) -> torch.Tensor:
    """∂s/∂σ at (x, σ): autograd through the σ input, or ``method="fd"`` central difference with step σ·``step``."""
    sigma = as_sigma(sigma, x)
    if method == "fd":
        if not 0 < step < 1:
            raise ValueError(f"finite-difference step must be in (0, 1) (relative to σ), got {step}")
        h = sigma * step
        return fd_sigma_derivative(score_fn, x, sigma, h, **cond)
    if method != "autograd":
        raise ValueError(f"time-derivative method must be 'autograd' or 'fd', got {method!r}")
    with torch.enable_grad():
        sigma = sigma.detach().requires_grad_(True)
        return sigma_derivative(score_fn(x, sigma, **cond), sigma, create_graph)


def fd_sigma_derivative(score_fn: ScoreFn, x: torch.Tensor, sigma: torch.Tensor, h: torch.Tensor,
                        **cond) -> torch.Tensor:
    """(s(x, σ + h) − s(x, σ − h)) / 2h, second-order accurate."""
    up, down = score_fn(x, sigma + h, **cond), score_fn(x, sigma - h, **cond)
    return (up - down) / append_dims(2 * h, x.ndim)


# ---- the residual ----

@dataclass
class FPEResidual:
    """Score-FPE terms at (x, σ); vectors ``[B, ...]``, scalars ``[B]``."""

    residual: torch.Tensor  # r = ∂σs − σ·∇ₓ(∇·s + ‖s‖²)
    dsdt: torch.Tensor  # ∂σs
    rhs: torch.Tensor  # σ·∇ₓ(∇·s + ‖s‖²)
    scalar: torch.Tensor  # ψ = σ²·(∇·s + ‖s‖²); E_{p_σ}[ψ] = 0 for the exact score
    score: torch.Tensor

    def scaled_norm(self, sigma: torch.Tensor) -> torch.Tensor:
        """‖σ²·r‖ / √d ``[B]``: the scale-free root-mean-square residual."""
        r = self.residual.reshape(self.residual.shape[0], -1)
        return sigma**2 * r.pow(2).mean(1).sqrt()


def score_fpe_residual(score_fn: ScoreFn, x: torch.Tensor, sigma, div: str = "exact",
                       probes: torch.Tensor | None = None, dt: str = "autograd", fd_step: float = 1e-3,
                       create_graph: bool = False, **cond) -> FPEResidual:
    """Residual of the VE/EDM score FPE ∂σs = σ·∇ₓ(∇·s + ‖s‖²) at x ``[B, ...]``, σ ``[B]`` (Lai et al. 2023).

    ``div`` is "exact" or "hutchinson" (with ``probes`` ``[n, B, ...]``); ``dt`` is "autograd" or "fd".
    ``create_graph=True`` keeps the graph so the residual can be trained on (third derivatives of the network).
    """
    sigma = as_sigma(sigma, x).detach()
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s_in = sigma.requires_grad_(dt == "autograd")
        s = score_fn(x, s_in, **cond)
        div_s = trace_of_jacobian(s, x, div, probes, create_graph=True)
        potential = div_s + _sum_dims(s * s, 1)
        (grad_pot,) = torch.autograd.grad(potential.sum(), x, create_graph=create_graph, retain_graph=True)
        if dt == "autograd":
            dsdt = sigma_derivative(s, s_in, create_graph)
        else:
            dsdt = score_time_derivative(score_fn, x.detach(), sigma, "fd", fd_step, **cond)
    rhs = append_dims(sigma, x.ndim) * grad_pot
    keep = (lambda v: v) if create_graph else torch.Tensor.detach
    return FPEResidual(residual=keep(dsdt - rhs), dsdt=keep(dsdt), rhs=keep(rhs),
                       scalar=keep(sigma**2 * potential), score=keep(s))
