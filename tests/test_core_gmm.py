import math

import pytest
import torch

from soundctm.core.gmm import GaussianMixture, ring_mixture


def test_denoiser_equals_monte_carlo_posterior_mean():
    gmm = GaussianMixture.create([[-1.0, 0.0], [1.0, 0.5]], std=[0.2, 0.4], weights=[0.3, 0.7])
    g = torch.Generator().manual_seed(0)
    x0 = gmm.sample(400_000, generator=g).double()
    sigma = 0.6
    x = torch.tensor([[0.2, 0.1], [-0.8, 0.3]], dtype=torch.float64)
    # E[x0 | x] = Σ x0_i N(x; x0_i, σ²) / Σ N(x; x0_i, σ²) for x0_i ~ p
    logw = -((x[:, None] - x0[None]) ** 2).sum(-1) / (2 * sigma**2)
    w = torch.softmax(logw, 1)
    mc = w @ x0
    exact = gmm.denoiser(x, sigma)
    assert torch.allclose(exact, mc, atol=0.01)


def test_score_is_gradient_of_log_density():
    gmm = ring_mixture(4, 1.0, 0.3)
    x = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    sigma = torch.full((6,), 0.4, dtype=torch.float64)
    (grad,) = torch.autograd.grad(gmm.log_prob(x, sigma).sum(), x)
    assert torch.allclose(gmm.score(x.detach(), sigma), grad, atol=1e-8)


def test_single_gaussian_density_closed_form():
    gmm = GaussianMixture.create([[0.5, -1.0]], std=0.3)
    x = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    var = 0.09 + 0.25
    expect = -0.5 * ((0.25 + 1.0) / var + 2 * math.log(2 * math.pi * var))
    assert gmm.log_prob(x, 0.5).item() == pytest.approx(expect, rel=1e-10)


def test_sample_statistics_and_bad_weights():
    gmm = GaussianMixture.create([[3.0, 0.0]], std=0.5)
    s = gmm.sample(50_000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(s.mean(0), torch.tensor([3.0, 0.0]), atol=0.01)
    assert torch.allclose(s.std(0), torch.tensor([0.5, 0.5]), atol=0.01)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture.create([[0.0], [1.0]], weights=[-1.0, 0.5])
