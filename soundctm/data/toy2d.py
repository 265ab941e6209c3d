"""2-D toy datasets: Gaussian mixtures (exact denoiser available), checkerboard, swiss roll, rings."""

from __future__ import annotations

import math

import torch

from soundctm.core.gmm import GaussianMixture, ring_mixture


def checkerboard(n: int, generator=None, squares: int = 4) -> torch.Tensor:
    """Uniform on the black squares of a squares×squares board on [−1, 1]²."""
    cell = 2.0 / squares
    ij = torch.randint(0, squares, (n, 2), generator=generator)
    ij[:, 1] = (2 * torch.div(ij[:, 1], 2, rounding_mode="floor") + ij[:, 0] % 2) % squares
    return (-1 + (ij + torch.rand(n, 2, generator=generator)) * cell).float()


def swiss_roll(n: int, generator=None, noise: float = 0.03) -> torch.Tensor:
    """A 2-D swiss roll scaled into about [−1, 1]²."""
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
    pts = torch.stack([t * t.cos(), t * t.sin()], 1) / 15.0
    return (pts + noise * torch.randn(n, 2, generator=generator)).float()


def rings(n: int, generator=None, radii=(0.35, 0.7, 1.05), noise: float = 0.02) -> torch.Tensor:
    """Points on concentric circles with small radial noise."""
    r = torch.tensor(radii)[torch.randint(0, len(radii), (n,), generator=generator)]
    ang = 2 * math.pi * torch.rand(n, generator=generator)
    r = r + noise * torch.randn(n, generator=generator)
    return torch.stack([r * ang.cos(), r * ang.sin()], 1).float()


GMM_DATASETS = {"gmm": lambda: ring_mixture(8, 1.0, 0.05)}
DATASETS = {"checkerboard": checkerboard, "swiss_roll": swiss_roll, "rings": rings}


def exact_mixture(name: str) -> GaussianMixture | None:
    """The exact mixture behind a dataset name, or None when the data has no closed-form denoiser."""
    return GMM_DATASETS[name]() if name in GMM_DATASETS else None


def sample_dataset(name: str, n: int, generator=None) -> torch.Tensor:
    """n samples ``[n, 2]`` of a named toy dataset."""
    if name in GMM_DATASETS:
        return GMM_DATASETS[name]().sample(n, generator=generator)
    if name not in DATASETS:
        raise ValueError(f"unknown toy dataset {name!r}; choose one of {sorted([*GMM_DATASETS, *DATASETS])}")
    return DATASETS[name](n, generator=generator)
