import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import torch

from soundctm.data.toy2d import exact_mixture

spec = importlib.util.spec_from_file_location(
    "fp_diffusion_toy", Path(__file__).parents[1] / "recipes" / "fp_diffusion_toy.py")
recipe = importlib.util.module_from_spec(spec)
sys.modules["fp_diffusion_toy"] = recipe
spec.loader.exec_module(recipe)


def test_checkerboard_reference_density_is_one_half_on_black_squares():
    cfg = replace(recipe.FPToyConfig(), grid=16, extent=1.0)  # 4 grid cells per board square
    dens = recipe.data_density("checkerboard", cfg, n=400_000)
    cell = (2.0 / 16) ** 2
    assert abs(float(dens.sum()) * cell - 1.0) < 1e-6
    black = dens > 0.25
    assert int(black.sum()) == 128  # 8 of 16 squares, 16 cells each
    assert torch.allclose(dens[black], torch.full_like(dens[black], 0.5), atol=0.05)


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
