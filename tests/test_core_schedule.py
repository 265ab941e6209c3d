import math

import pytest
import torch

from soundctm.core import schedule


def test_karras_endpoints_and_formula():
    s = schedule.karras_sigmas(18)
    assert s[0].item() == pytest.approx(80.0, rel=1e-6) and s[-1].item() == pytest.approx(0.002, rel=1e-5)
    assert (s[1:] < s[:-1]).all()
    i = 5
    expect = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert s[i].item() == pytest.approx(expect, rel=1e-6)


def test_karras_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n must be"):
        schedule.karras_sigmas(0)
    with pytest.raises(ValueError, match="sigma_min"):
        schedule.karras_sigmas(5, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="n >= 2"):
        schedule.ctm_grid(1)


def test_append_zero():
    assert schedule.append_zero(torch.tensor([2.0, 1.0])).tolist() == [2.0, 1.0, 0.0]


def test_interpolation_hits_grid_points():
    grid = schedule.ctm_grid(40)
    n, k = torch.tensor([0, 7, 20]), torch.tensor([5, 3, 19])
    frac = torch.linspace(0, 1, 4)[:, None]
    path = schedule.karras_interp(grid[n][None], grid[n + k][None], frac)
    assert torch.allclose(path[0], grid[n]) and torch.allclose(path[-1], grid[n + k], rtol=1e-5)
    # k Karras steps from t_n land exactly on the grid points t_{n+1..n+k}
    p = schedule.interpolate_sigmas(grid[7:8], grid[10:11], 3)[:, 0]
    assert torch.allclose(p, grid[7:11], rtol=1e-5)


def test_lognormal_density_moments():
    g = torch.Generator().manual_seed(0)
    s = schedule.sample_lognormal(200_000, -1.2, 1.2, generator=g)
    assert s.log().mean().item() == pytest.approx(-1.2, abs=0.02)
    assert s.log().std().item() == pytest.approx(1.2, abs=0.02)


def test_half_lognormal_half_grid():
    grid = schedule.ctm_grid(10)
    s = schedule.sample_half_lognormal_half_grid(1001, grid, generator=torch.Generator().manual_seed(1))
    assert s.shape == (1001,)
    on_grid = torch.isclose(s[501:, None], grid[None]).any(1)
    assert on_grid.all()
    # the log-normal half is continuous: (almost) never on the grid
    assert torch.isclose(s[:501, None], grid[None]).any(1).float().mean() < 0.01
    counts = torch.isclose(s[501:, None], grid[None]).sum(0).float()
    assert counts.min() > 25 and math.isclose(counts.sum().item(), 500)
