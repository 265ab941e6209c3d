"""Per-sample training losses: denoising score matching, CTM's trajectory loss, distances, GAN terms.

Every loss returns one value per sample ``[B]``; reduction and weighting stay at the call site.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from soundctm.core.precond import edm_loss_weight
from soundctm.core.solvers import solve
from soundctm.core.utils import append_dims, multinomial, rand, randint


def _mean_per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], -1).mean(1)


def dsm_loss(D, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor | None = None,
             sigma_data: float = 0.5, **cond) -> torch.Tensor:
    """EDM eq. 2 with λ(σ): λ(σ)·‖D(x0 + σn, σ) − x0‖² averaged over the non-batch dims."""
    noise = torch.randn_like(x0) if noise is None else noise
    denoised = D(x0 + append_dims(sigma, x0.ndim) * noise, sigma, **cond)
    return edm_loss_weight(sigma, sigma_data) * _mean_per_sample((denoised - x0) ** 2)


# ---- distances d(a, b, sigma) -> [B] ----

def l2_distance(a: torch.Tensor, b: torch.Tensor, sigma=None) -> torch.Tensor:
    """Mean squared difference per sample."""
    return _mean_per_sample((a - b) ** 2)


def pseudo_huber_distance(a: torch.Tensor, b: torch.Tensor, sigma=None, c: float | None = None) -> torch.Tensor:
    """Song & Dhariwal (2023) eq. 13: √(‖a−b‖² + c²) − c with c = 0.00054·√d by default."""
    d = a[0].numel()
    c = 0.00054 * math.sqrt(d) if c is None else c
    sq = (a - b).reshape(a.shape[0], -1).pow(2).sum(1)
    return (sq + c**2).sqrt() - c


def unit_normalize(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Normalise a feature map ``[B, C, ...]`` to unit L2 norm over channels at every position (as LPIPS)."""
    return f / (f.pow(2).sum(1, keepdim=True).sqrt() + eps)


def feature_distance(features):
    """Distance in a network's multi-level features: Σ_l mean ‖n(f_l(a, σ)) − n(f_l(b, σ))‖².

    ``features(x, sigma) -> list of [B, C, ...]`` (e.g. a frozen teacher UNet's block outputs at noise σ).
    """

    def distance(a, b, sigma=None):
        fa, fb = features(a, sigma), features(b, sigma)
        return sum(_mean_per_sample((unit_normalize(x) - unit_normalize(y)) ** 2) for x, y in zip(fa, fb))

    return distance


DISTANCES = {"l2": l2_distance, "pseudo_huber": pseudo_huber_distance}


# ---- CTM ----

@dataclass(frozen=True)
class CTMTimes:
    """Indices on the CTM grid and their σ values: t = t_n, u = t_{n+k}, s = t_m with n < n+k ≤ m."""

    n: torch.Tensor
    k: torch.Tensor
    m: torch.Tensor
    t: torch.Tensor
    u: torch.Tensor
    s: torch.Tensor


def sample_k(k_max: torch.Tensor, weighting: str = "linear", generator=None) -> torch.Tensor:
    """Draw k ∈ {1..k_max_i} per sample with P(k) ∝ k ("linear", SoundCTM) or uniformly ("uniform")."""
    if weighting not in ("linear", "uniform"):
        raise ValueError(f"k weighting must be 'linear' or 'uniform', got {weighting!r}")
    ks = torch.arange(1, int(k_max.max()) + 1, device=k_max.device, dtype=torch.float64)
    w = ks[None].expand(len(k_max), -1) if weighting == "linear" else torch.ones_like(ks)[None].expand(len(k_max), -1)
    w = torch.where(ks[None] <= k_max[:, None], w, torch.zeros_like(w))
    return multinomial(w, 1, generator=generator, device=k_max.device).squeeze(1) + 1


def sample_ctm_times(batch: int, grid: torch.Tensor, max_k: int | None = None, k_weighting: str = "linear",
                     generator=None) -> CTMTimes:
    """t = t_n (n uniform on 0..N−2), u = t_{n+k} (k ≤ min(max_k, N−1−n)), s = t_m (m uniform on n+k..N−1).
    Drawn on the generator's device (the CPU without one), placed on the grid's."""
    N = len(grid)
    n = randint(0, N - 1, (batch,), generator)
    k_cap = torch.full_like(n, N - 1 if max_k is None else max_k)
    k = sample_k(torch.minimum(k_cap, N - 1 - n), k_weighting, generator)
    lo = n + k
    m = lo + (rand(batch, generator, dtype=torch.float64) * (N - lo)).long().clamp(max=N - 1 - lo)
    dev = grid.device
    n, k, m = n.to(dev), k.to(dev), m.to(dev)
    return CTMTimes(n=n, k=k, m=m, t=grid[n], u=grid[n + k], s=grid[m])


@dataclass
class CTMLossOutput:
    loss: torch.Tensor  # [B]
    times: CTMTimes
    estimate: torch.Tensor
    target: torch.Tensor


def ctm_loss(student, target_net, teacher, x0: torch.Tensor, grid: torch.Tensor, distance=l2_distance,
             match: str = "sigma_min", times: CTMTimes | None = None, max_k: int | None = None,
             k_weighting: str = "linear", solver: str = "heun", noise: torch.Tensor | None = None,
             generator=None, **cond) -> CTMLossOutput:
    """CTM loss (Kim et al. 2024, eq. 8; SoundCTM eq. 4).

    estimate = G_θ(x_t, t, s); target = G_θ⁻(Solver_teacher(x_t, t → u), u, s) with θ⁻ a stop-grad EMA.
    ``match="sigma_min"`` compares G_θ⁻(estimate, s, σ_min) with G_θ⁻(target, s, σ_min): gradients flow
    through the estimate only, so θ⁻'s parameters must not require grad. ``match="s"`` compares at s.
    ``teacher`` is a denoiser (already guided if CFG is wanted); ``student`` and ``target_net`` are CTM
    jumps G(x, t, s, **cond).
    """
    if match not in ("sigma_min", "s"):
        raise ValueError(f"match must be 'sigma_min' or 's', got {match!r}")
    times = sample_ctm_times(x0.shape[0], grid, max_k, k_weighting, generator) if times is None else times
    noise = torch.randn_like(x0) if noise is None else noise
    x_t = x0 + append_dims(times.t, x0.ndim) * noise
    estimate = student(x_t, times.t, times.s, **cond)
    with torch.no_grad():
        x_u = solve(teacher, x_t, times.t, times.u, times.k, method=solver, **cond)
        target = target_net(x_u, times.u, times.s, **cond)
    sigma = times.s
    if match == "sigma_min":
        sigma = torch.full_like(times.s, float(grid[-1]))
        estimate = target_net(estimate, times.s, sigma, **cond)
        with torch.no_grad():
            target = target_net(target, times.s, sigma, **cond)
    return CTMLossOutput(loss=distance(estimate, target, sigma), times=times, estimate=estimate, target=target)


def adaptive_weight(loss_main: torch.Tensor, loss_aux: torch.Tensor, param: torch.Tensor, eps: float = 1e-8,
                    max_weight: float = 1e4) -> torch.Tensor:
    """λ = ‖∇_p L_main‖ / ‖∇_p L_aux‖ at parameter p (CTM's DSM/GAN balancing, after VQGAN's), detached."""
    g_main = torch.autograd.grad(loss_main, param, retain_graph=True)[0]
    g_aux = torch.autograd.grad(loss_aux, param, retain_graph=True)[0]
    return (g_main.norm() / (g_aux.norm() + eps)).clamp(max=max_weight).detach()


def gan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss softplus(−D(fake)) per sample."""
    return _mean_per_sample(F.softplus(-fake_logits))


def gan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss softplus(−D(real)) + softplus(D(fake)) per sample."""
    return _mean_per_sample(F.softplus(-real_logits)) + _mean_per_sample(F.softplus(fake_logits))


def gan_discriminator_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The balanced share of reals and fakes a discriminator places on their side (mean logit per sample > 0 for a
    real, < 0 for a fake); 0.5 is chance."""
    real = (_mean_per_sample(real_logits) > 0).float().mean()
    fake = (_mean_per_sample(fake_logits) < 0).float().mean()
    return 0.5 * (real + fake)
