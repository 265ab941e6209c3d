"""FP-Diffusion's training objective: denoising score matching plus the score-FPE residual (Lai et al., ICML 2023).

Per sample: L = λ(σ)·‖D(x_σ, σ) − x0‖² + α·(w(σ)·‖r(x_σ, σ)‖/√d)^m + β·(mean_batch ψ)², where r is the score-FPE
residual of ``soundctm.core.fpe`` evaluated on the same noised points x_σ = x0 + σn and ψ = σ²(∇·s + ‖s‖²) its
scalar form, whose mean under p_σ is zero for the exact score (the β term is a batch-level quantity, reported on
every sample). The residual needs third derivatives of the network; ``fp_sigma_max`` restricts it to small σ and
``fp_fraction`` to the first part of the batch to bound the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from soundctm.core.fpe import denoiser_score, make_probes, score_fpe_residual
from soundctm.core.losses import dsm_loss
from soundctm.core.utils import append_dims

# w(σ) multiplying the RMS residual, then raised to the power m.
# "unit" σ²: the scale-free σ²‖r‖. With m = 2 this equals, up to a constant, FP-Diffusion's g²-weighted squared
#   residual (their "ll", m = 2) for a VE SDE in exponential time u ∝ ln σ: there g_u² ∝ σ² and ∂_u s = σ·∂_σ s,
#   so g_u²‖r_u‖² ∝ σ²·σ²‖r‖².
# "g2" 2σ: g² of the process in σ-time; it weights small σ far more (σ⁻² relative to "unit" for m = 2).
# "constant" 1.
FP_WEIGHTS = {
    "unit": lambda sigma: sigma**2,
    "g2": lambda sigma: 2 * sigma,
    "constant": lambda sigma: torch.ones_like(sigma),
}


@dataclass(frozen=True)
class FPConfig:
    """Weights and estimators of the FP regulariser."""

    alpha: float = 0.1
    beta: float = 0.0
    weighting: str = "unit"
    power: int = 2
    div: str = "exact"
    n_probes: int = 1
    probe: str = "rademacher"
    dt: str = "autograd"
    fp_sigma_max: float | None = None
    fp_fraction: float = 1.0

    def __post_init__(self):
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {self.alpha}, {self.beta}")
        if self.weighting not in FP_WEIGHTS:
            raise ValueError(f"weighting must be one of {sorted(FP_WEIGHTS)}, got {self.weighting!r}")
        if self.power not in (1, 2):
            raise ValueError(f"power must be 1 or 2, got {self.power}")
        if not 0 < self.fp_fraction <= 1:
            raise ValueError(f"fp_fraction must be in (0, 1], got {self.fp_fraction}")


@dataclass
class FPLossOutput:
    """Per-sample terms ``[B]``: total = dsm + α·fp + β·scalar (fp is 0 where the residual was not evaluated)."""

    loss: torch.Tensor
    dsm: torch.Tensor
    fp: torch.Tensor
    scalar: torch.Tensor


def fp_residual_penalty(D, x: torch.Tensor, sigma: torch.Tensor, cfg: FPConfig, generator=None, **cond):
    """(w(σ)·‖r‖/√d)^m ``[b]`` and ψ ``[b]`` on noised points x ``[b, ...]`` (graph kept for training)."""
    probes = make_probes(x, cfg.n_probes, cfg.probe, generator) if cfg.div == "hutchinson" else None
    res = score_fpe_residual(denoiser_score(D), x, sigma, cfg.div, probes, cfg.dt, create_graph=True, **cond)
    rms = res.residual.reshape(x.shape[0], -1).pow(2).mean(1).add(1e-20).sqrt()
    return (FP_WEIGHTS[cfg.weighting](sigma) * rms) ** cfg.power, res.scalar


def fp_subset(sigma: torch.Tensor, cfg: FPConfig) -> torch.Tensor:
    """Indices of the samples that get the residual: the first ⌈fraction·B⌉ with σ ≤ fp_sigma_max."""
    keep = torch.arange(len(sigma), device=sigma.device) < max(1, round(cfg.fp_fraction * len(sigma)))
    if cfg.fp_sigma_max is not None:
        keep = keep & (sigma <= cfg.fp_sigma_max)
    return keep.nonzero().squeeze(1)


def fp_dsm_loss(D, x0: torch.Tensor, sigma: torch.Tensor, cfg: FPConfig = FPConfig(), noise=None,
                sigma_data: float = 0.5, generator=None, **cond) -> FPLossOutput:
    """DSM + α·score-FPE residual (+ β·scalar term) per sample, for any denoiser D(x, σ, **cond)."""
    noise = torch.randn_like(x0) if noise is None else noise
    dsm = dsm_loss(D, x0, sigma, noise, sigma_data, **cond)
    fp, scalar = torch.zeros_like(dsm), torch.zeros_like(dsm)
    idx = fp_subset(sigma, cfg)
    if (cfg.alpha > 0 or cfg.beta > 0) and len(idx) > 0:
        x = (x0 + append_dims(sigma, x0.ndim) * noise)[idx]
        sub = {k: v[idx] if torch.is_tensor(v) and v.ndim > 0 and v.shape[0] == len(sigma) else v
               for k, v in cond.items()}
        pen, psi = fp_residual_penalty(D, x, sigma[idx], cfg, generator, **sub)
        fp = fp.index_copy(0, idx, pen)
        scalar = scalar + psi.mean() ** 2
    return FPLossOutput(loss=dsm + cfg.alpha * fp + cfg.beta * scalar, dsm=dsm, fp=fp, scalar=scalar)
