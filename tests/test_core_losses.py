import math

import pytest
import torch

from soundctm.core import losses, schedule, solvers
from soundctm.core.gmm import GaussianMixture


def test_dsm_loss_of_the_exact_denoiser_is_the_posterior_variance():
    # data N(μ, v·I) in d dims: D*(x,σ) = μ + v/(v+σ²)(x−μ), E‖D* − x0‖²/d = vσ²/(v+σ²)
    v, sigma, d = 0.3**2, 0.7, 4
    gmm = GaussianMixture.create([[0.5] * d], std=0.3)
    x0 = gmm.sample(200_000, generator=torch.Generator().manual_seed(0)).double()
    s = torch.full((len(x0),), sigma, dtype=torch.float64)
    loss = losses.dsm_loss(gmm.denoiser, x0, s, sigma_data=0.5)
    lam = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    assert loss.mean().item() == pytest.approx(lam * v * sigma**2 / (v + sigma**2), rel=0.01)
    worse = losses.dsm_loss(lambda x, sg: gmm.denoiser(x, sg) + 0.05, x0, s, sigma_data=0.5)
    assert worse.mean() > loss.mean()


def test_distances():
    a, b = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    assert torch.allclose(losses.l2_distance(a, b), torch.ones(2))
    assert torch.allclose(losses.pseudo_huber_distance(a, a), torch.zeros(2))
    c = 0.00054 * math.sqrt(12)
    assert torch.allclose(losses.pseudo_huber_distance(a, b), torch.full((2,), math.sqrt(12 + c**2) - c))
    # unit-normalised features: scaling a feature map does not change the distance
    fd = losses.feature_distance(lambda x, sigma: [x, x.mean(-1, keepdim=True)])
    x, y = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    assert torch.allclose(fd(x, y), fd(3 * x, 0.5 * y), atol=1e-5)
    assert torch.allclose(fd(x, x), torch.zeros(2))
    assert (fd(x, y) > 0).all()


def test_ctm_times_respect_the_grid_order_and_k_law():
    grid = schedule.ctm_grid(10)
    g = torch.Generator().manual_seed(0)
    tm = losses.sample_ctm_times(50_000, grid, generator=g)
    assert (tm.n < tm.n + tm.k).all() and (tm.n + tm.k <= tm.m).all() and (tm.m <= 9).all()
    assert torch.equal(tm.t, grid[tm.n]) and torch.equal(tm.u, grid[tm.n + tm.k]) and torch.equal(tm.s, grid[tm.m])
    # P(k | n = 0) ∝ k on 1..9
    k0 = tm.k[tm.n == 0].float()
    freq = torch.bincount(k0.long(), minlength=10)[1:].float() / len(k0)
    assert torch.allclose(freq, torch.arange(1, 10) / 45.0, atol=0.02)
    capped = losses.sample_ctm_times(1000, grid, max_k=2, generator=g)
    assert capped.k.max() <= 2
    with pytest.raises(ValueError, match="weighting"):
        losses.sample_k(torch.tensor([3]), "square")


def test_ctm_loss_vanishes_for_the_exact_jump_and_not_for_a_wrong_one():
    gmm = GaussianMixture.create([[-1.0, 0.0], [1.0, 0.0]], std=0.2)
    grid = schedule.ctm_grid(8, sigma_max=5.0).double()

    def exact(x, t, s):
        return solvers.solve(gmm.denoiser, x, t, s, 200)

    def wrong(x, t, s):
        return x * (s / t)[:, None]

    x0 = gmm.sample(16).double()
    times = losses.sample_ctm_times(16, grid, generator=torch.Generator().manual_seed(1))
    # the teacher's k Heun steps are slightly off the exact ODE; l2 is still tiny compared with a wrong jump
    good = losses.ctm_loss(exact, exact, gmm.denoiser, x0, grid, times=times)
    bad = losses.ctm_loss(wrong, exact, gmm.denoiser, x0, grid, times=times)
    assert good.loss.mean() < 1e-3 < bad.loss.mean()
    at_s = losses.ctm_loss(exact, exact, gmm.denoiser, x0, grid, times=times, match="s")
    assert at_s.loss.mean() < 1e-3
    with pytest.raises(ValueError, match="match"):
        losses.ctm_loss(exact, exact, gmm.denoiser, x0, grid, match="zero")


def test_ctm_loss_gradient_flows_to_the_student_only():
    grid = schedule.ctm_grid(6)
    w = torch.tensor(0.5, requires_grad=True)
    w_ema = torch.tensor(0.5)  # θ⁻ is an EMA copy: its parameters never require grad

    def student(x, t, s):
        return x * (s / t)[:, None] + (1 - s / t)[:, None] * w * x

    def target(x, t, s):
        return x * (s / t)[:, None] + (1 - s / t)[:, None] * w_ema * x

    out = losses.ctm_loss(student, target, lambda x, sg: 0.3 * x, torch.randn(8, 2), grid)
    out.loss.mean().backward()
    assert w.grad is not None and w.grad.abs() > 0
    # the estimate's gradient passes through G_θ⁻(·, s, σ_min); the target carries none
    assert out.estimate.requires_grad and not out.target.requires_grad


def test_adaptive_weight_is_the_gradient_norm_ratio():
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    main, aux = 3 * (p**2).sum(), 0.5 * (p**2).sum()
    assert losses.adaptive_weight(main, aux, p).item() == pytest.approx(6.0)


def test_gan_losses_closed_form():
    zero = torch.zeros(3, 4)
    assert torch.allclose(losses.gan_generator_loss(zero), torch.full((3,), math.log(2)))
    assert torch.allclose(losses.gan_discriminator_loss(zero, zero), torch.full((3,), 2 * math.log(2)))
    assert losses.gan_discriminator_loss(torch.full((1, 1), 10.0), torch.full((1, 1), -10.0)) < 1e-3
    # accuracy: per-sample mean logit; reals right when > 0 (1 of 3 here), fakes right when < 0 (1 of 2)
    real = torch.tensor([[1.0, 1.0], [2.0, -3.0], [-1.0, 0.5]])
    fake = torch.tensor([[-1.0, -2.0], [0.5, 0.1]])
    assert losses.gan_discriminator_accuracy(real, fake).item() == pytest.approx(0.5 * (1 / 3 + 1 / 2))
