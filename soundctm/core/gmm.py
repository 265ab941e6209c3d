"""A Gaussian mixture with diagonal covariances and its exact EDM denoiser, score and density at every σ.

The data density convolved with N(0, σ²I) stays a mixture, so D(x, σ) = E[x0 | x] is closed-form: the
reference teacher for toy experiments and the ground truth for tests of solvers, losses and likelihoods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from soundctm.core.utils import append_dims, as_sigma


@dataclass(frozen=True)
class GaussianMixture:
    """Σ_k w_k N(μ_k, diag(v_k)); means ``[K, d]``, variances ``[K, d]``, weights ``[K]`` (normalised)."""

    means: torch.Tensor
    variances: torch.Tensor
    weights: torch.Tensor

    @staticmethod
    def create(means, std=0.1, weights=None) -> GaussianMixture:
        """Build from means ``[K, d]`` and a scalar, ``[K]`` or ``[K, d]`` standard deviation."""
        means = torch.as_tensor(means, dtype=torch.float64)
        std = torch.as_tensor(std, dtype=torch.float64)
        var = (std.reshape(-1, 1) if std.ndim == 1 else std) ** 2 * torch.ones_like(means)
        w = torch.ones(len(means), dtype=torch.float64) if weights is None else torch.as_tensor(weights).double()
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        return GaussianMixture(means, var, w / w.sum())

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _posterior(self, x: torch.Tensor, sigma: torch.Tensor):
        """Responsibilities ``[B, K]``, per-component log-densities ``[B, K]`` and total variances ``[B, K, d]``."""
        x64 = x.reshape(x.shape[0], -1).double()
        var = self.variances[None] + sigma.double()[:, None, None] ** 2  # [B, K, d]
        diff = x64[:, None] - self.means[None]
        log_n = -0.5 * ((diff**2 / var) + var.log() + math.log(2 * math.pi)).sum(-1)
        log_joint = log_n + self.weights.log()[None]
        return torch.softmax(log_joint, dim=1), log_joint, var, diff

    def denoiser(self, x: torch.Tensor, sigma, **_) -> torch.Tensor:
        """E[x0 | x_σ = x] = Σ_k r_k(x)·(μ_k + v_k/(v_k + σ²)·(x − μ_k))."""
        sigma = as_sigma(sigma, x)
        r, _, var, diff = self._posterior(x, sigma)
        post = self.means[None] + self.variances[None] / var * diff
        return (r[..., None] * post).sum(1).to(x.dtype).reshape(x.shape)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """∇_x log p_σ(x) = (D(x, σ) − x)/σ²."""
        sigma = as_sigma(sigma, x)
        return (self.denoiser(x, sigma) - x) / append_dims(sigma, x.ndim) ** 2

    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """log p_σ(x) ``[B]`` (σ = 0 gives the data density)."""
        sigma = as_sigma(sigma, x)
        return torch.logsumexp(self._posterior(x, sigma)[1], dim=1).to(x.dtype)

    def linear_posterior(self, A: torch.Tensor, y: torch.Tensor, sigma_y: float):
        """The exact posterior of x given y = A x + σ_y·n (one measurement ``y [m]``, ``A [m, d]``): a mixture with
        component means ``[K, d]``, covariances ``[K, d, d]`` and weights ``[K]``. Component k:
        P_k = (Σ_k⁻¹ + AᵀA/σ_y²)⁻¹, m_k = P_k(Σ_k⁻¹μ_k + Aᵀy/σ_y²), weight ∝ w_k N(y; Aμ_k, AΣ_kAᵀ + σ_y²I)."""
        A, y = A.double(), y.double()
        prec = torch.diag_embed(1 / self.variances) + (A.T @ A)[None] / sigma_y**2
        cov = torch.linalg.inv(prec)
        rhs = self.means / self.variances + (A.T @ y)[None] / sigma_y**2
        mean = (cov @ rhs[..., None])[..., 0]
        y_cov = A[None] @ torch.diag_embed(self.variances) @ A.T[None] + sigma_y**2 * torch.eye(len(y))[None]
        y_dist = torch.distributions.MultivariateNormal(self.means @ A.T, covariance_matrix=y_cov)
        w = torch.softmax(self.weights.log() + y_dist.log_prob(y[None]), 0)
        return mean, cov, w

    def sample_linear_posterior(self, A: torch.Tensor, y: torch.Tensor, sigma_y: float, n: int,
                                generator=None) -> torch.Tensor:
        """n exact samples ``[n, d]`` (float32) of x given y = A x + σ_y·n (``linear_posterior``)."""
        mean, cov, w = self.linear_posterior(A, y, sigma_y)
        k = torch.multinomial(w, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        L = torch.linalg.cholesky(cov)
        return (mean[k] + (L[k] @ z[..., None])[..., 0]).float()

    def sample(self, n: int, generator=None) -> torch.Tensor:
        """n samples ``[n, d]`` (float32)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[k] + self.variances[k].sqrt() * z).float()


def ring_mixture(n_modes: int = 8, radius: float = 1.0, std: float = 0.05) -> GaussianMixture:
    """n_modes equal-weight components evenly spaced on a circle (a standard 2-D toy)."""
    ang = torch.arange(n_modes, dtype=torch.float64) * 2 * math.pi / n_modes
    return GaussianMixture.create(torch.stack([ang.cos(), ang.sin()], 1) * radius, std)
