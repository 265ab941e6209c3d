import pytest
import torch

from soundctm.core import samplers, schedule, solvers
from soundctm.core.gmm import ring_mixture

GMM = ring_mixture(4, 1.0, 0.2)


def exact_jump(x, t, s):
    """The exact CTM jump of the GMM's PF-ODE (fine Heun solve from t to s)."""
    return solvers.solve(GMM.denoiser, x, t, s, 64)


def toy_G(x, t, s):
    """A cheap deterministic jump with G(x, t, t) = x."""
    return x * (s / t)[:, None] + (1 - s / t)[:, None] * torch.tanh(x)


def test_one_step_equals_direct_jump_for_every_gamma():
    sig = schedule.karras_sigmas(2)
    x = torch.randn(5, 2) * 80
    direct = toy_G(x, torch.full((5,), 80.0), torch.full((5,), 0.002))
    for gamma in (0.0, 0.3, 1.0):
        out = samplers.sample_ctm(toy_G, x, sig, gamma, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(out, direct)


def test_gamma_zero_is_deterministic_and_draws_no_noise(monkeypatch):
    sig = schedule.karras_sigmas(5)
    x = torch.randn(3, 2) * 80
    a = samplers.sample_ctm(toy_G, x, sig, 0.0)

    def no_randn(*args, **kwargs):
        raise AssertionError("gamma=0 must not draw noise")

    monkeypatch.setattr(torch, "randn", no_randn)
    b = samplers.sample_ctm(toy_G, x, sig, 0.0)
    assert torch.equal(a, b)


def test_gamma_zero_with_exact_jumps_reaches_the_ode_endpoint():
    sig = schedule.karras_sigmas(4, sigma_max=10.0)
    x = torch.randn(4, 2, dtype=torch.float64) * 10
    out = samplers.sample_ctm(exact_jump, x, sig, 0.0)
    ref = solvers.solve(GMM.denoiser, x, 10.0, 0.002, 256)
    assert torch.allclose(out, ref, atol=1e-3)


def test_gamma_one_equals_consistency_model_multistep():
    sig = schedule.karras_sigmas(4)
    x = torch.randn(3, 2) * 80
    out = samplers.sample_ctm(toy_G, x, sig, 1.0, generator=torch.Generator().manual_seed(3))
    # Song et al. (2023) Alg. 1: x0 = f(x, τ); x_{τ'} = x0 + √(τ'² − ε²)·z; with f = G(·, ·, ε)
    g = torch.Generator().manual_seed(3)
    eps = sig[-1]
    ref = x
    for i in range(3):
        ref = toy_G(ref, sig[i].expand(3), eps.expand(3))
        if i < 2:
            ref = ref + (sig[i + 1] ** 2 - eps**2).sqrt() * torch.randn(ref.shape, generator=g)
    assert torch.allclose(out, ref, atol=1e-5)


def test_intermediate_gamma_renoises_by_the_right_amount():
    """With γ = 0.6 the first jump lands at s = √(1−γ²)·t_1 = 0.8·5 and is re-noised to t_1 with fresh noise of std
    √(t_1² − s²) = 3: a jump that returns 0 leaves exactly that noise as the second jump's input."""
    sig = torch.tensor([10.0, 5.0, 0.002])
    calls, inputs = [], []

    def G_zero(x, t, s):
        calls.append((t[0].item(), s[0].item()))
        inputs.append(x.clone())
        return torch.zeros_like(x)

    samplers.sample_ctm(G_zero, torch.randn(20000, 2) * 10, sig, 0.6, generator=torch.Generator().manual_seed(0))
    assert calls[0] == pytest.approx((10.0, 0.8 * 5.0)) and calls[1] == pytest.approx((5.0, 0.002))
    noise = inputs[1]
    assert noise.mean().item() == pytest.approx(0.0, abs=0.05)
    assert noise.std().item() == pytest.approx(3.0, rel=0.02)


def test_bad_gamma():
    with pytest.raises(ValueError, match="gamma"):
        samplers.sample_ctm(toy_G, torch.zeros(1, 2), schedule.karras_sigmas(3), 1.5)


def test_sample_ode_lands_on_the_closed_form_flow_and_the_score_sampler_calls_g_at_t_equal_s():
    """Data N(μ, s²) has the PF-ODE solution x(σ) = μ + (x_T − μ)·√(s² + σ²)/√(s² + σ_T²): Heun with 40 steps lands
    on it with Heun's second-order error (¼ per doubling of the steps); the score sampler evaluates g(x, t, s) only
    at s = t and then follows the same path; the callback sees every step."""
    mu, s2 = 0.7, 0.3**2

    def D(x, sigma):  # the exact denoiser of N(μ, s²): E[x_0 | x_σ]
        v = sigma[:, None] ** 2
        return (s2 * x + v * mu) / (s2 + v)

    x = torch.randn(5, 2, dtype=torch.float64) * 10
    exact = mu + (x - mu) * (s2**0.5) / (s2 + 100.0) ** 0.5

    def error(n):
        path = schedule.append_zero(schedule.karras_sigmas(n, sigma_max=10.0)).double()
        return (samplers.sample_ode(D, x, path, "heun") - exact).abs().max().item()

    e20, e40, e80 = error(20), error(40), error(80)
    assert e80 < 1e-3 and e20 / e40 > 3.5 and e40 / e80 > 3.5, (e20, e40, e80)
    path = schedule.append_zero(schedule.karras_sigmas(80, sigma_max=10.0)).double()

    def g(x_, t, s):
        assert torch.equal(t, s), "the score sampler must evaluate g(x, t, t)"
        return D(x_, t)

    assert torch.allclose(samplers.sample_ctm_score(g, x, path, "heun"), exact, atol=1e-3)
    steps = []
    samplers.sample_ode(D, x, path, "euler", callback=lambda d: steps.append(d["i"]))
    assert steps == list(range(80))
