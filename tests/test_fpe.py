import pytest
import torch

from soundctm.core import fpe
from soundctm.core.fp_loss import FPConfig, fp_dsm_loss, fp_subset
from soundctm.core.gmm import GaussianMixture, ring_mixture


def _gmm_score(gmm, scale=1.0):
    return lambda x, sigma: scale * gmm.score(x, sigma)


def test_exact_divergence_of_linear_field_is_trace():
    A = torch.randn(5, 5, dtype=torch.float64)
    x = torch.randn(7, 5, dtype=torch.float64)
    div = fpe.divergence(lambda v: v @ A.T + 3.0, x)
    assert torch.allclose(div, torch.full((7,), A.trace().item(), dtype=torch.float64), atol=1e-12)


def test_exact_divergence_on_image_shaped_input():
    A = torch.randn(12, 12, dtype=torch.float64)
    x = torch.randn(3, 2, 3, 2, dtype=torch.float64)
    div = fpe.divergence(lambda v: (v.reshape(3, -1) @ A.T).reshape(v.shape), x)
    assert torch.allclose(div, torch.full((3,), A.trace().item(), dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_for_nonlinear_field(kind):
    W = torch.randn(6, 6, dtype=torch.float64)
    field = lambda v: torch.tanh(v @ W.T) * v.sin()  # noqa: E731
    x = torch.randn(4, 6, dtype=torch.float64)
    exact = fpe.divergence(field, x)
    n = 4000
    probes = fpe.make_probes(x, n, kind, torch.Generator().manual_seed(1))
    xg = x.clone().requires_grad_(True)
    out = field(xg)
    (vjp,) = torch.autograd.grad(out, xg, probes, is_grads_batched=True)
    single = (vjp * probes).sum(-1)  # [n, B] single-probe estimates
    se = single.std(0) / n**0.5
    assert ((single.mean(0) - exact).abs() < 4 * se).all()
    assert torch.allclose(fpe.divergence(field, x, "hutchinson", probes), single.mean(0), atol=1e-10)


def test_score_time_derivative_matches_closed_form_for_gaussian():
    mu, v = torch.tensor([0.3, -0.5], dtype=torch.float64), torch.tensor([0.2, 0.7], dtype=torch.float64)
    gmm = GaussianMixture.create(mu[None], std=v.sqrt()[None])
    x = torch.randn(5, 2, dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.4, 1.0, 3.0, 10.0], dtype=torch.float64)
    expect = 2 * sigma[:, None] * (x - mu) / (v + sigma[:, None] ** 2) ** 2  # ∂σ[−(x−μ)/(v+σ²)]
    auto = fpe.score_time_derivative(_gmm_score(gmm), x, sigma)
    fd = fpe.score_time_derivative(_gmm_score(gmm), x, sigma, method="fd", step=1e-4)
    assert torch.allclose(auto, expect, rtol=1e-10, atol=1e-12)
    assert torch.allclose(fd, expect, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("sigma", [0.03, 0.3, 3.0])
def test_exact_gmm_score_satisfies_score_fpe_and_perturbed_does_not(sigma):
    gmm = ring_mixture(4, 1.0, 0.2)
    x = gmm.sample(16, generator=torch.Generator().manual_seed(0)).double() + 0.1 * torch.randn(16, 2).double()
    sig = torch.full((16,), sigma, dtype=torch.float64)
    scale = sig[:, None] ** 2
    exact = fpe.score_fpe_residual(_gmm_score(gmm), x, sig)
    fd = fpe.score_fpe_residual(_gmm_score(gmm), x, sig, dt="fd", fd_step=1e-4)
    bad = fpe.score_fpe_residual(_gmm_score(gmm, 1.1), x, sig)
    size = (scale * exact.rhs).abs().mean()
    assert (scale * exact.residual).abs().max() < 1e-8 * size
    assert (scale * fd.residual).abs().max() < 1e-5 * size  # finite-difference error only
    assert (scale * bad.residual).abs().mean() > 1e-2 * size


def test_hutchinson_residual_is_unbiased_estimate_of_exact_residual():
    gmm = ring_mixture(3, 1.0, 0.3)
    x = torch.randn(4, 2, dtype=torch.float64)
    sig = torch.full((4,), 0.5, dtype=torch.float64)
    exact = fpe.score_fpe_residual(_gmm_score(gmm, 1.2), x, sig).residual
    g = torch.Generator().manual_seed(2)
    draws = torch.stack([
        fpe.score_fpe_residual(_gmm_score(gmm, 1.2), x, sig, div="hutchinson",
                               probes=fpe.make_probes(x, 1, "gaussian", g)).residual
        for _ in range(40)
    ])
    se = draws.std(0) / 40**0.5
    assert ((draws.mean(0) - exact).abs() < 5 * se + 1e-12).all()
    assert (draws.std(0) > 0).any()  # the single-probe estimates really vary


def test_scalar_form_has_zero_mean_under_p_sigma_only_for_exact_score():
    gmm = ring_mixture(4, 1.0, 0.2)
    g = torch.Generator().manual_seed(3)
    n, sigma = 4000, 0.3
    x = gmm.sample(n, generator=g).double() + sigma * torch.randn(n, 2, generator=g, dtype=torch.float64)
    sig = torch.full((n,), sigma, dtype=torch.float64)
    psi = fpe.score_fpe_residual(_gmm_score(gmm), x, sig).scalar
    psi_bad = fpe.score_fpe_residual(_gmm_score(gmm, 1.5), x, sig).scalar
    se = psi.std() / n**0.5
    assert psi.mean().abs() < 4 * se
    assert psi_bad.mean() > 10 * psi_bad.std() / n**0.5  # E[div s' + |s'|²] = 0.75·E|s|² for s' = 1.5·s


def test_bad_estimator_names_raise():
    x = torch.randn(2, 2)
    with pytest.raises(ValueError, match="divergence method"):
        fpe.divergence(lambda v: v, x, method="trace")
    with pytest.raises(ValueError, match="probes"):
        fpe.divergence(lambda v: v, x, method="hutchinson")
    with pytest.raises(ValueError, match="probe kind"):
        fpe.make_probes(x, 1, "uniform")
    with pytest.raises(ValueError, match="time-derivative"):
        fpe.score_time_derivative(lambda v, s: v, x, 1.0, method="spline")
    with pytest.raises(ValueError, match="step"):
        fpe.score_time_derivative(lambda v, s: v, x, 1.0, method="fd", step=2.0)


# ---- the regularised loss ----

def _perturbed_denoiser(gmm, a):
    return lambda x, sigma: gmm.denoiser(x, sigma) + a * torch.tanh(x) * (sigma / (1 + sigma))[:, None]


def test_fp_term_vanishes_for_exact_denoiser_and_not_for_perturbed():
    gmm = ring_mixture(4, 1.0, 0.2)
    x0 = gmm.sample(32, generator=torch.Generator().manual_seed(0)).double()
    sigma = torch.logspace(-1.5, 0.5, 32, dtype=torch.float64)
    noise = torch.randn_like(x0)
    cfg = FPConfig(alpha=1.0, beta=1.0)
    good = fp_dsm_loss(gmm.denoiser, x0, sigma, cfg, noise)
    bad = fp_dsm_loss(_perturbed_denoiser(gmm, torch.tensor(0.3, dtype=torch.float64)), x0, sigma, cfg, noise)
    assert good.fp.max() < 1e-12 and (good.dsm > 0).all()
    assert bad.fp.mean() > 1e-4
    assert torch.allclose(good.loss, good.dsm + good.fp + good.scalar)


def test_fp_term_gradient_matches_finite_difference():
    gmm = ring_mixture(3, 1.0, 0.3)
    x0 = gmm.sample(8, generator=torch.Generator().manual_seed(1)).double()
    sigma, noise = torch.logspace(-1, 0.3, 8, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    cfg = FPConfig(alpha=1.0, dt="autograd")

    def fp_at(a):
        return fp_dsm_loss(_perturbed_denoiser(gmm, a), x0, sigma, cfg, noise).fp.sum()

    a = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(fp_at(a), a)
    h = 1e-5
    up, down = (fp_at(torch.tensor(0.2 + e, dtype=torch.float64)) for e in (h, -h))
    fd = (up - down) / (2 * h)
    assert grad.item() == pytest.approx(fd.item(), rel=1e-5)


def test_fp_subset_respects_fraction_and_sigma_window():
    sigma = torch.tensor([0.1, 5.0, 0.2, 0.3, 9.0, 0.05])
    assert fp_subset(sigma, FPConfig(fp_fraction=0.5)).tolist() == [0, 1, 2]
    assert fp_subset(sigma, FPConfig(fp_sigma_max=1.0)).tolist() == [0, 2, 3, 5]
    with pytest.raises(ValueError, match="fp_fraction"):
        FPConfig(fp_fraction=0.0)
    with pytest.raises(ValueError, match="weighting"):
        FPConfig(weighting="snr")
