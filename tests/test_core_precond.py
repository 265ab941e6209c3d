import pytest
import torch
from torch import nn

from soundctm.core import precond


class Raw(nn.Module):
    def __init__(self, d=3):
        super().__init__()
        self.lin = nn.Linear(d + 2, d)

    def forward(self, x, c_t, c_s=None):
        c_s = c_t if c_s is None else c_s
        return self.lin(torch.cat([x, c_t[:, None], c_s[:, None]], 1))


def test_scalings_closed_form():
    sigma, sd = torch.tensor([0.3, 2.0]), 0.5
    sc = precond.edm_scalings(sigma, sd)
    assert torch.allclose(sc.c_skip, sd**2 / (sigma**2 + sd**2))
    assert torch.allclose(sc.c_out, sigma * sd / (sigma**2 + sd**2).sqrt())
    assert torch.allclose(sc.c_in, 1 / (sigma**2 + sd**2).sqrt())
    assert torch.allclose(sc.c_noise, sigma.log() / 4)
    # the effective training target has unit variance: λ(σ)·c_out² = 1
    assert torch.allclose(precond.edm_loss_weight(sigma, sd) * sc.c_out**2, torch.ones(2))


def test_denoiser_tends_to_identity_as_sigma_vanishes():
    D = precond.EDMDenoiser(Raw(), sigma_data=0.5)
    x = torch.randn(4, 3)
    err = [(D(x, s) - x).abs().max().item() for s in (1e-1, 1e-3, 1e-5)]
    assert err[2] < 1e-4 and err[0] > err[1] > err[2]


def test_ctm_g_equals_x_when_s_equals_t_and_shapes_any():
    G = precond.CTMPrecond(Raw(), sigma_data=0.5)
    x = torch.randn(5, 3)
    t = torch.rand(5) * 10 + 0.01
    assert torch.equal(G(x, t, t), x)
    s = t / 3
    g = G.g(x, t, s)
    assert torch.allclose(G(x, t, s), (s / t)[:, None] * x + (1 - s / t)[:, None] * g)


def test_ctm_denoiser_is_g_at_equal_times():
    G = precond.CTMPrecond(Raw(), sigma_data=0.5)
    x, sigma = torch.randn(2, 3), torch.tensor([0.5, 3.0])
    assert torch.allclose(G.denoiser()(x, sigma), G.g(x, sigma, sigma))


def test_ctm_jump_image_shapes():
    x = torch.randn(2, 1, 4, 4)
    g = torch.zeros_like(x)
    out = precond.ctm_jump(x, torch.tensor([2.0, 4.0]), torch.tensor([1.0, 1.0]), g)
    assert torch.allclose(out[0], x[0] / 2) and torch.allclose(out[1], x[1] / 4)


def test_scalar_sigma_broadcast_and_bad_shape():
    D = precond.EDMDenoiser(Raw(), 0.5)
    x = torch.randn(3, 3)
    assert torch.allclose(D(x, 0.7), D(x, torch.full((3,), 0.7)))
    with pytest.raises(ValueError, match="sigma must be"):
        D(x, torch.ones(2))
