"""Fréchet distance between Gaussians fitted to embedding sets (FAD, FD_openl3, FD_PANNs …), FAD∞ and bootstrap CIs.

FD(N(μ₁, Σ₁), N(μ₂, Σ₂)) = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2})   (Dowson & Landau 1982).

The matrix square roots are taken of symmetric PSD matrices with ``eigh`` in float64 (tiny negative eigenvalues
from round-off are clipped to 0), so no non-symmetric ``sqrtm`` of Σ₁Σ₂ and no complex parts are involved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class GaussianStats:
    """Mean ``mu [D]`` and covariance ``sigma [D, D]`` of ``n`` embeddings."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def save(self, path: str | Path) -> None:
        """Write the statistics to an ``.npz`` file (no pickles)."""
        np.savez(path, mu=self.mu, sigma=self.sigma, n=np.asarray(self.n))

    @classmethod
    def load(cls, path: str | Path) -> GaussianStats:
        """Read statistics written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as f:
            return cls(mu=f["mu"], sigma=f["sigma"], n=int(f["n"]))


@dataclass(frozen=True)
class FDInfinityResult:
    """FD∞ = intercept of the least-squares line FD(n) = FD∞ + slope/n through ``(sizes, fds)``."""

    fd_inf: float
    slope: float
    sizes: np.ndarray
    fds: np.ndarray


@dataclass(frozen=True)
class FDBootstrapResult:
    """FD on the full sets with a percentile bootstrap confidence interval ``[low, high]``."""

    fd: float
    low: float
    high: float
    confidence: float
    samples: np.ndarray = field(repr=False)


def as_embeddings(x, name: str = "x") -> np.ndarray:
    """Validate an embedding set and return it as a float64 ``[N, D]`` array."""
    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a 2-D array [N, D] with N >= 2, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def fit_gaussian(x) -> GaussianStats:
    """Sample mean and unbiased covariance of ``x [N, D]``."""
    x = as_embeddings(x)
    return GaussianStats(mu=x.mean(0), sigma=np.atleast_2d(np.cov(x, rowvar=False)), n=x.shape[0])


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix ``[D, D]`` via eigh (negative round-off clipped)."""
    a = np.asarray(a, dtype=np.float64)
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}) = Σᵢ √λᵢ of the symmetric PSD matrix Σ₁^{1/2} Σ₂ Σ₁^{1/2}."""
    s1 = sqrtm_psd(sigma1)
    m = s1 @ np.asarray(sigma2, dtype=np.float64) @ s1
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """FD = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr((Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}), clipped at 0."""
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"embedding dims differ: {a.mu.shape[0]} vs {b.mu.shape[0]}")
    mean_term = float(np.sum((a.mu.astype(np.float64) - b.mu) ** 2))
    cov_term = float(np.trace(a.sigma) + np.trace(b.sigma)) - 2.0 * trace_sqrt_product(a.sigma, b.sigma)
    return max(mean_term + cov_term, 0.0)


def frechet_distance_of_embeddings(x, y) -> float:
    """FD between Gaussians fitted to ``x [N, D]`` and ``y [M, D]``."""
    return frechet_distance(fit_gaussian(as_embeddings(x, "x")), fit_gaussian(as_embeddings(y, "y")))


def default_subsample_sizes(n_max: int, count: int = 10) -> np.ndarray:
    """``count`` sizes evenly spaced in 1/n between n_max/5 (at least 2) and n_max."""
    n_min = max(2, n_max // 5)
    inv = np.linspace(1.0 / n_min, 1.0 / n_max, count)
    return np.unique(np.round(1.0 / inv).astype(int))


def fit_inverse_n_line(sizes: np.ndarray, fds: np.ndarray) -> tuple[float, float]:
    """Least-squares (intercept, slope) of FD(n) = intercept + slope / n."""
    design = np.stack([np.ones(len(sizes)), 1.0 / np.asarray(sizes, dtype=np.float64)], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, np.asarray(fds, dtype=np.float64), rcond=None)
    return float(intercept), float(slope)


def fd_infinity(
    x,
    y,
    sizes=None,
    draws: int = 1,
    subsample_reference: bool = True,
    seed: int = 0,
) -> FDInfinityResult:
    """FD∞: FD at several subsample sizes n, extrapolated to n → ∞ by FD(n) = FD∞ + k/n.

    Chong & Forsyth 2020 (FID∞), applied to audio as FAD∞ by Gui et al. 2024. ``x [N, D]`` is the reference set,
    ``y [M, D]`` the evaluated one. With ``subsample_reference`` both sets are drawn at size n (the intercept is then
    free of both sets' 1/n bias); otherwise the full reference statistics are kept fixed, as in those papers, and the
    intercept keeps the reference's own O(1/N) bias. ``draws`` subsamples (without replacement) are averaged per n.
    """
    x, y = as_embeddings(x, "x"), as_embeddings(y, "y")
    n_max = min(len(x), len(y)) if subsample_reference else len(y)
    sizes = default_subsample_sizes(n_max) if sizes is None else np.asarray(sizes, dtype=int)
    if len(sizes) < 2 or sizes.min() < 2 or sizes.max() > n_max:
        raise ValueError(f"sizes must hold >= 2 distinct values in [2, {n_max}], got {sizes.tolist()}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    rng = np.random.default_rng(seed)
    ref_stats = None if subsample_reference else fit_gaussian(x)
    fds = np.array([np.mean([fd_of_subsample(x, y, n, rng, ref_stats) for _ in range(draws)]) for n in sizes])
    intercept, slope = fit_inverse_n_line(sizes, fds)
    return FDInfinityResult(fd_inf=intercept, slope=slope, sizes=sizes, fds=fds)


def fd_of_subsample(x, y, n: int, rng: np.random.Generator, ref_stats: GaussianStats | None) -> float:
    """FD between n rows of y (and n rows of x, unless fixed ``ref_stats`` are given), drawn without replacement."""
    gen = fit_gaussian(y[rng.choice(len(y), n, replace=False)])
    ref = ref_stats if ref_stats is not None else fit_gaussian(x[rng.choice(len(x), n, replace=False)])
    return frechet_distance(ref, gen)


def bootstrap_fd(x, y, n_boot: int = 100, confidence: float = 0.95, seed: int = 0) -> FDBootstrapResult:
    """FD with a percentile bootstrap CI: both sets resampled with replacement ``n_boot`` times."""
    x, y = as_embeddings(x, "x"), as_embeddings(y, "y")
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    samples = np.array([resampled_fd(x, y, rng) for _ in range(n_boot)])
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    fd = frechet_distance_of_embeddings(x, y)
    return FDBootstrapResult(fd=fd, low=float(low), high=float(high), confidence=confidence, samples=samples)


def resampled_fd(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> float:
    """FD between bootstrap resamples (with replacement, same sizes) of x and y."""
    xb = x[rng.integers(0, len(x), len(x))]
    yb = y[rng.integers(0, len(y), len(y))]
    return frechet_distance_of_embeddings(xb, yb)
