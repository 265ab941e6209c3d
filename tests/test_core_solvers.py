import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from soundctm.core import schedule, solvers
from soundctm.core.gmm import GaussianMixture

GMM = GaussianMixture.create([[-1.0, 0.5], [1.0, -0.5], [0.0, 1.5]], std=0.3)
X0 = torch.tensor([[1.5, -0.3], [-2.0, 1.0], [0.4, 2.2]], dtype=torch.float64)
T_START, T_END = 2.0, 0.3


def reference():
    def f(sigma, y):
        x = torch.from_numpy(y.reshape(X0.shape))
        d = (x - GMM.denoiser(x, float(sigma))) / sigma
        return d.numpy().ravel()

    sol = solve_ivp(f, (T_START, T_END), X0.numpy().ravel(), method="DOP853", rtol=1e-12, atol=1e-12)
    return torch.from_numpy(sol.y[:, -1].reshape(X0.shape))


REF = reference()


def errors(method, ns):
    out = []
    for n in ns:
        x = solvers.solve(GMM.denoiser, X0.clone(), T_START, T_END, n, method=method)
        out.append((x - REF).abs().max().item())
    return np.array(out)


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_convergence_order_against_scipy(method, order):
    err = errors(method, [8, 16, 32, 64])
    ratios = err[:-1] / err[1:]
    assert np.all(ratios > 2 ** order * 0.75), ratios
    assert np.all(ratios < 2 ** order * 1.4), ratios


def test_heun_to_zero_uses_euler_on_last_step():
    x = torch.randn(3, 2, dtype=torch.float64)
    D = GMM.denoiser
    # a step to σ = 0 lands on the denoiser output: x + (x − D)/σ·(0 − σ) = D
    assert torch.allclose(solvers.heun_step(D, x, 0.5, 0.0), D(x, 0.5))
    assert torch.allclose(solvers.dpmpp_2m_step(D, x, 0.5, 0.0)[0], D(x, 0.5))


def test_per_sample_steps_equal_individual_solves():
    grid = schedule.ctm_grid(12).double()
    n, k = torch.tensor([0, 3, 5]), torch.tensor([4, 1, 6])
    x = X0.clone()
    calls = []

    def D(x_, sigma):
        calls.append(len(x_))
        return GMM.denoiser(x_, sigma)

    batched = solvers.solve(D, x, grid[n], grid[n + k], k)
    for i in range(3):
        single = solvers.solve(GMM.denoiser, x[i:i + 1], grid[n[i]:n[i] + 1], grid[n[i] + k[i]:n[i] + k[i] + 1],
                               int(k[i]))
        assert torch.allclose(batched[i:i + 1], single, atol=1e-10)
    # only samples with steps left are evaluated: Heun costs 2 evaluations per sample-step
    assert sum(calls) == 2 * int(k.sum())


def test_solve_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_steps"):
        solvers.solve(GMM.denoiser, X0, 1.0, 0.5, 0)
    with pytest.raises(ValueError, match="method"):
        solvers.solve(GMM.denoiser, X0, 1.0, 0.5, 3, method="rk4")


def test_solve_path_callback_and_to_d():
    seen = []
    path = schedule.append_zero(schedule.karras_sigmas(5, sigma_max=5.0)).double()
    out = solvers.solve_path(GMM.denoiser, X0.clone() * 5, path, "euler", callback=lambda d: seen.append(d["i"]))
    assert seen == list(range(5)) and torch.isfinite(out).all()
    x, den = torch.ones(2, 2), torch.zeros(2, 2)
    assert torch.allclose(solvers.to_d(x, torch.tensor([2.0, 4.0]), den), torch.tensor([[0.5, 0.5], [0.25, 0.25]]))
