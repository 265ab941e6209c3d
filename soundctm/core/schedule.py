"""Noise levels: the Karras et al. (2022) σ grid, the CTM discrete time grid, and training σ densities."""

from __future__ import annotations

import torch

from soundctm.core.utils import randint, randn

SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
RHO = 7.0


def karras_sigmas(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO,
                  device=None, dtype=torch.float32) -> torch.Tensor:
    """EDM eq. 5: σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i = 0..n−1 (descending, no zero)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    if n == 1:
        return torch.tensor([sigma_max], device=device, dtype=dtype)
    ramp = torch.linspace(0, 1, n, device=device, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return ((hi + ramp * (lo - hi)) ** rho).to(dtype)


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    """Append a final σ = 0 (the data end of an ODE solve)."""
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def ctm_grid(n: int = 40, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO,
             device=None) -> torch.Tensor:
    """CTM's discrete times t_0 = σ_max > … > t_{N−1} = σ_min (Kim et al. 2024, sec. 4); the Karras grid of N points."""
    if n < 2:
        raise ValueError(f"the CTM grid needs n >= 2 points, got {n}")
    return karras_sigmas(n, sigma_min, sigma_max, rho, device=device)


def karras_interp(t: torch.Tensor, u: torch.Tensor, frac: torch.Tensor, rho: float = RHO) -> torch.Tensor:
    """σ at fraction ``frac`` of the way from t to u, linear in σ^{1/ρ} (broadcasts; computed in float64)."""
    t64, u64 = t.double() ** (1 / rho), u.double() ** (1 / rho)
    return ((t64 + frac.double() * (u64 - t64)) ** rho).to(t.dtype)


def interpolate_sigmas(t: torch.Tensor, u: torch.Tensor, n_steps: int, rho: float = RHO) -> torch.Tensor:
    """Per-sample Karras path from t to u in n_steps: ``[n_steps + 1, B]`` (the grid points of a Karras grid)."""
    frac = torch.linspace(0, 1, n_steps + 1, device=t.device, dtype=torch.float64)[:, None]
    return karras_interp(t[None], u[None], frac, rho)


def sample_lognormal(n: int, p_mean: float = -1.2, p_std: float = 1.2, generator=None, device=None) -> torch.Tensor:
    """EDM training density: ln σ ~ N(P_mean, P_std²)."""
    z = randn(n, generator, device)
    return (p_mean + p_std * z).exp()


def sample_grid_uniform(n: int, grid: torch.Tensor, generator=None) -> torch.Tensor:
    """σ drawn uniformly from the points of a discrete grid."""
    idx = randint(0, len(grid), (n,), generator, grid.device)
    return grid[idx]


def sample_half_lognormal_half_grid(n: int, grid: torch.Tensor, p_mean: float = -1.2, p_std: float = 1.2,
                                    generator=None) -> torch.Tensor:
    """SoundCTM's DSM density: the first ⌈n/2⌉ σ log-normal, the rest uniform on the CTM grid."""
    n_ln = (n + 1) // 2
    ln = sample_lognormal(n_ln, p_mean, p_std, generator=generator, device=grid.device)
    return torch.cat([ln, sample_grid_uniform(n - n_ln, grid, generator=generator)])
