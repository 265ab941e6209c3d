from dataclasses import replace

import pytest
import torch

from recipes import fp_diffusion_toy as recipe
from soundctm.data.toy2d import exact_mixture, sample_dataset


@pytest.mark.parametrize("data", ["checkerboard", "rings", "swiss_roll", "gmm"])
def test_reference_log_density_integrates_to_one(data):
    h = 0.02  # a lattice step ≤ the noise width (0.02 rings, 0.03 swiss roll, 0.05 gmm): Riemann sums are exact
    ax = torch.arange(-1.5 + h / 2, 1.5, h, dtype=torch.float64)
    pts = torch.cartesian_prod(ax, ax)
    logp = recipe.REFERENCE_LOG_PROB[data](pts) if data != "swiss_roll" else \
        recipe.swiss_roll_log_prob(pts, n_t=1000)
    assert float(logp.exp().sum()) * h**2 == pytest.approx(1.0, abs=0.01)


def test_reference_density_is_positive_on_samples_and_checkerboard_is_one_half():
    g = torch.Generator().manual_seed(0)
    for data in recipe.DATASETS:
        assert torch.isfinite(recipe.REFERENCE_LOG_PROB[data](sample_dataset(data, 200, g).double())).all()
    x = torch.tensor([[-0.75, -0.75], [-0.25, -0.75], [0.3, 0.8], [1.2, 0.0]], dtype=torch.float64)
    p = recipe.checkerboard_log_prob(x).exp()
    assert torch.allclose(p, torch.tensor([0.5, 0.0, 0.0, 0.0], dtype=torch.float64))


def test_model_density_of_exact_mixture_denoiser_matches_its_density():
    cfg = replace(recipe.FPToyConfig(), grid=6, extent=1.2)
    gmm = exact_mixture("gmm")
    model = recipe.model_density(gmm.denoiser, cfg)
    exact = recipe.data_density("gmm", cfg)  # same grid orientation
    big = exact > 0.05 * exact.max()
    assert big.any()
    assert torch.allclose(model[big], exact[big], rtol=0.05)


def test_bad_alphas_exit_code_2(capsys):
    assert recipe.main(["--preset", "smoke", "--alphas", "0"]) == 2
    assert "alphas" in capsys.readouterr().err
