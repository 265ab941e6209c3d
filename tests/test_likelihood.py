import math

import pytest
import torch

from soundctm.core import likelihood as lik
from soundctm.core.gmm import GaussianMixture

SIGMA_MIN = 0.002


def _gaussian():
    return GaussianMixture.create([[0.3, -0.2]], std=[[0.5, 0.8]])


@pytest.mark.parametrize("solver", ["dopri5", "rk4"])
def test_gaussian_likelihood_matches_closed_form(solver):
    gmm = _gaussian()
    x = gmm.sample(6, generator=torch.Generator().manual_seed(0)).double()
    res = lik.pf_ode_log_likelihood(gmm.denoiser, x, sigma_min=SIGMA_MIN, solver=solver, n_steps=25, rtol=1e-4,
                                    atol=1e-4)
    per_dim = (res.log_prob - gmm.log_prob(x, SIGMA_MIN)).abs() / 2
    assert per_dim.max() < 0.01
    assert torch.allclose(res.log_prob, res.prior_log_prob + res.delta_log_prob)


def test_mixture_likelihood_matches_closed_form():
    gmm = GaussianMixture.create([[-1.0, 0.0], [1.0, 0.5]], std=[0.2, 0.4], weights=[0.3, 0.7])
    x = torch.tensor([[-1.1, 0.1], [0.9, 0.7], [0.0, 0.2]], dtype=torch.float64)
    res = lik.pf_ode_log_likelihood(gmm.denoiser, x, sigma_min=SIGMA_MIN, rtol=1e-4, atol=1e-4)
    assert ((res.log_prob - gmm.log_prob(x, SIGMA_MIN)).abs() / 2).max() < 0.01


def test_rademacher_hutchinson_is_exact_for_diagonal_jacobian():
    # D of a diagonal Gaussian is affine with a diagonal Jacobian, so vᵀJv = tr J for every ±1 probe.
    gmm = _gaussian()
    x = gmm.sample(4, generator=torch.Generator().manual_seed(1)).double()
    exact = lik.pf_ode_log_likelihood(gmm.denoiser, x, solver="rk4", n_steps=10)
    hutch = lik.pf_ode_log_likelihood(gmm.denoiser, x, solver="rk4", n_steps=10, div="hutchinson",
                                      generator=torch.Generator().manual_seed(2))
    assert torch.allclose(exact.log_prob, hutch.log_prob, atol=1e-9)


def test_ctm_student_denoiser_uses_g_at_equal_times():
    gmm = _gaussian()

    def g(x, t, s):
        return gmm.denoiser(x, t) + 100.0 * (t - s)[:, None]

    x = torch.randn(3, 2, dtype=torch.float64)
    a = lik.pf_ode_log_likelihood(lik.denoiser_from_g(g), x, solver="rk4", n_steps=10)
    b = lik.pf_ode_log_likelihood(gmm.denoiser, x, solver="rk4", n_steps=10)
    assert torch.allclose(a.log_prob, b.log_prob, atol=1e-12)


@pytest.mark.parametrize("solver", ["dopri5", "rk4"])
def test_solvers_on_analytic_ode(solver):
    # dy/dt = cos(t)·y  ⇒  y(t) = y0·exp(sin t)
    y0 = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    opts = {"rtol": 1e-9, "atol": 1e-9} if solver == "dopri5" else {"n_steps": 200}
    out = lik.SOLVERS[solver](lambda t, y: math.cos(t) * y, y0, 0.0, 3.0, **opts)
    assert torch.allclose(out.y, y0 * math.exp(math.sin(3.0)), rtol=1e-7)


def test_dopri5_adapts_step_count_to_tolerance():
    y0 = torch.ones(1, 1, dtype=torch.float64)
    loose = lik.dopri5(lambda t, y: -3 * y, y0, 0.0, 4.0, rtol=1e-3, atol=1e-3)
    tight = lik.dopri5(lambda t, y: -3 * y, y0, 0.0, 4.0, rtol=1e-10, atol=1e-10)
    assert tight.steps > 3 * loose.steps
    assert abs(tight.y.item() - math.exp(-12)) < 1e-9


def test_prior_log_prob_closed_form():
    x = torch.randn(5, 3, 2, dtype=torch.float64)
    ref = torch.distributions.Normal(0.0, 80.0).log_prob(x).reshape(5, -1).sum(1)
    assert torch.allclose(lik.prior_log_prob(x, 80.0), ref)


def test_bits_per_dim_of_uniform_dequantised_data_is_eight():
    k = torch.randint(0, 256, (10, 3, 4, 4))
    x = lik.dequantize(k, 256, torch.Generator().manual_seed(0))
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(((x + 1) / 2 * 256).floor().long(), k)
    log_p = torch.full((10,), -48 * math.log(2.0))  # uniform density 2^-d on [-1, 1]^d
    assert torch.allclose(lik.bits_per_dim(log_p, 48, n_bins=256), torch.full((10,), 8.0))
    assert torch.allclose(lik.bits_per_dim(log_p, 48), torch.ones(10))


def test_bad_arguments_raise():
    gmm = _gaussian()
    x = torch.zeros(1, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="solver"):
        lik.pf_ode_log_likelihood(gmm.denoiser, x, solver="euler")
    with pytest.raises(ValueError, match="sigma_min"):
        lik.pf_ode_log_likelihood(gmm.denoiser, x, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="n_bins"):
        lik.dequantize(torch.zeros(2, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="x_int"):
        lik.dequantize(torch.full((2,), 300), 256)
    with pytest.raises(ValueError, match="rtol"):
        lik.dopri5(lambda t, y: y, x, 0.0, 1.0, rtol=0.0)
