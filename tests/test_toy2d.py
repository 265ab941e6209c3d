import pytest
import torch

from recipes import toy2d
from soundctm.core.precond import CTMPrecond
from soundctm.data.toy2d import sample_dataset
from soundctm.metrics.sample_distance import mmd_rbf, sliced_wasserstein
from soundctm.nn.toy import ToyMLP, ToyMLPConfig


def test_short_distillation_from_the_exact_gmm_teacher():
    cfg = toy2d.ToyConfig(steps=250, hidden=128, batch=128, ema=0.9, dsm_weight=0.0)
    g = torch.Generator().manual_seed(0)
    teacher = toy2d.build_teacher(cfg, g)
    untrained = CTMPrecond(ToyMLP(ToyMLPConfig(hidden=128, two_time=True)), cfg.sigma_data)
    student = toy2d.distill(cfg, teacher, g)
    x_T = torch.randn(1000, 2, generator=g) * 80
    data = sample_dataset("gmm", 1000, g)
    with torch.no_grad():
        ref = toy2d.exact_endpoint(teacher, x_T, 128)
        one_step = toy2d.ctm_samples(student, x_T, 1, 0.0)
        untrained_one = toy2d.ctm_samples(untrained, x_T, 1, 0.0)
        heun4 = toy2d.teacher_samples(teacher, x_T, 4)
    # maps x_T to the exact ODE endpoint far better than an untrained student ...
    assert (one_step - ref).norm(dim=1).mean() < 0.3 * (untrained_one - ref).norm(dim=1).mean()
    # ... and at 1 step matches the data at least as well as the teacher with 4 Heun steps
    assert sliced_wasserstein(one_step, data) <= sliced_wasserstein(heun4, data)


def test_toy_datasets_and_distances():
    g = torch.Generator().manual_seed(0)
    for name in ("gmm", "checkerboard", "swiss_roll", "rings"):
        x = sample_dataset(name, 500, g)
        assert x.shape == (500, 2) and x.abs().max() < 2
    with pytest.raises(ValueError, match="unknown toy dataset"):
        sample_dataset("moons", 10)
    a, b = sample_dataset("gmm", 2000, g), sample_dataset("gmm", 2000, g)
    shifted = a + torch.tensor([0.5, 0.0])
    assert sliced_wasserstein(a, b) < 0.1 < sliced_wasserstein(a, shifted)
    assert abs(mmd_rbf(a, b)) < 0.01 < mmd_rbf(a, shifted)


def test_sliced_wasserstein_of_a_shift_in_1d_is_the_shift():
    x = torch.randn(1000, 1)
    assert sliced_wasserstein(x, x + 0.3, n_projections=4) == pytest.approx(0.3, rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        sliced_wasserstein(x, x[:10])


def test_checkerboard_occupies_only_black_squares():
    x = sample_dataset("checkerboard", 4000, torch.Generator().manual_seed(1))
    ij = ((x + 1) / 0.5).floor().long()
    assert ((ij[:, 0] + ij[:, 1]) % 2 == 0).all()
