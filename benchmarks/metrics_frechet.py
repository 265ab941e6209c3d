"""Fréchet distance measurements on synthetic Gaussians: 1/n bias vs FD∞, agreement with scipy's sqrtm, speed.

Writes benchmarks/results/metrics_frechet.{md,json}. Single-threaded BLAS, a few minutes on one CPU core:

    .venv/bin/python benchmarks/metrics_frechet.py [--quick]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402

from soundctm.metrics.frechet import (  # noqa: E402
    GaussianStats,
    fd_infinity,
    fit_gaussian,
    frechet_distance,
    frechet_distance_of_embeddings,
)

RESULTS = Path(__file__).parent / "results"


def scipy_fd(a: GaussianStats, b: GaussianStats) -> float:
    """The common reference recipe: sqrtm of the non-symmetric Σ₁Σ₂, real part."""
    covmean = scipy.linalg.sqrtm(a.sigma @ b.sigma)
    return float(np.sum((a.mu - b.mu) ** 2) + np.trace(a.sigma + b.sigma - 2 * np.real(covmean)))


def correlated_gaussian(rng, d: int, scale: float):
    """A random covariance with a decaying spectrum (like real embeddings) and its Cholesky factor."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    spectrum = scale / (1.0 + np.arange(d)) ** 0.8
    return q * np.sqrt(spectrum)


def true_fd(mu1, l1, mu2, l2) -> float:
    """Exact FD from the generating parameters (Σ = L Lᵀ)."""
    return frechet_distance(GaussianStats(mu1, l1 @ l1.T, 0), GaussianStats(mu2, l2 @ l2.T, 0))


def bias_experiment(d: int, n_pool: int, sizes, draws: int, seed: int = 0) -> dict:
    """FD at each n and FD∞ against the exact FD of two different correlated Gaussians."""
    rng = np.random.default_rng(seed)
    l1, l2 = correlated_gaussian(rng, d, 1.0), correlated_gaussian(rng, d, 1.3)
    mu1, mu2 = np.zeros(d), 0.05 * rng.standard_normal(d)
    x = rng.standard_normal((n_pool, d)) @ l1.T + mu1
    y = rng.standard_normal((n_pool, d)) @ l2.T + mu2
    r = fd_infinity(x, y, sizes=sizes, draws=draws, seed=seed)
    return {"dim": d, "pool": n_pool, "true_fd": true_fd(mu1, l1, mu2, l2), "fd_inf": r.fd_inf,
            "slope": r.slope, "sizes": r.sizes.tolist(), "fds": r.fds.tolist(),
            "fd_full_pool": frechet_distance_of_embeddings(x, y)}


def agreement_and_speed(d: int, n: int, seed: int = 0) -> dict:
    """Our eigh FD vs scipy sqrtm on well- and ill-conditioned (n < d) covariances; wall times."""
    rng = np.random.default_rng(seed)
    row = {"dim": d, "n": n}
    x, y = rng.standard_normal((n, d)), rng.standard_normal((n, d)) + 0.1
    a, b = fit_gaussian(x), fit_gaussian(y)
    t0 = time.perf_counter()
    ours = frechet_distance(a, b)
    t1 = time.perf_counter()
    ref = scipy_fd(a, b)
    t2 = time.perf_counter()
    row.update(ours=ours, scipy=ref, rel_diff=abs(ours - ref) / max(abs(ref), 1e-12),
               ours_s=t1 - t0, scipy_s=t2 - t1, singular=n <= d)
    return row


def write_markdown(bias: list[dict], speed: list[dict], path: Path) -> None:
    """Two tables: bias/FD∞ and agreement/speed."""
    lines = ["# Fréchet distance on synthetic Gaussians", "",
             "Command: `.venv/bin/python benchmarks/metrics_frechet.py` (single-threaded BLAS).", "",
             "## 1/n bias and FD∞ (two different correlated Gaussians, exact FD known)", "",
             "| D | pool | exact FD | FD(n_min) | FD(n_max) | FD(full pool) | FD∞ | slope k |",
             "|---|---|---|---|---|---|---|---|"]
    for r in bias:
        lines.append(f"| {r['dim']} | {r['pool']} | {r['true_fd']:.4f} | {r['fds'][0]:.4f} (n={r['sizes'][0]}) | "
                     f"{r['fds'][-1]:.4f} (n={r['sizes'][-1]}) | {r['fd_full_pool']:.4f} | {r['fd_inf']:.4f} | "
                     f"{r['slope']:.1f} |")
    lines += ["", "## eigh-based FD vs scipy.linalg.sqrtm(Σ₁Σ₂)", "",
              "| D | n | singular Σ | ours | scipy | rel. diff | ours (s) | scipy (s) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in speed:
        lines.append(f"| {r['dim']} | {r['n']} | {r['singular']} | {r['ours']:.6f} | {r['scipy']:.6f} | "
                     f"{r['rel_diff']:.1e} | {r['ours_s']:.3f} | {r['scipy_s']:.3f} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller dims and fewer draws")
    args = parser.parse_args(argv)
    dims = (32, 128) if args.quick else (128, 512)
    draws = 3 if args.quick else 10
    bias = [bias_experiment(d, 16 * d, sizes=[2 * d, 4 * d, 8 * d, 16 * d], draws=draws) for d in dims]
    speed_dims = ((128, 64), (128, 2000), (512, 4000)) if args.quick else (
        (128, 64), (128, 2000), (512, 400), (512, 4000), (2048, 8000))
    speed = [agreement_and_speed(d, n) for d, n in speed_dims]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "metrics_frechet.json").write_text(json.dumps({"bias": bias, "speed": speed}, indent=2))
    write_markdown(bias, speed, RESULTS / "metrics_frechet.md")
    print((RESULTS / "metrics_frechet.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
