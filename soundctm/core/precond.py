"""EDM preconditioning (Karras et al. 2022, Table 1) and the CTM parameterisation (Kim et al. 2024, eq. 6).

A raw network ``F(x_in, c_noise, **cond)`` becomes a denoiser ``D(x, σ) = c_skip x + c_out F(c_in x, c_noise)``.
A raw two-time network ``F(x_in, c_noise_t, c_noise_s, **cond)`` becomes CTM's ``g(x, t, s)`` and the jump
``G(x, t, s) = (s/t)·x + (1 − s/t)·g(x, t, s)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from soundctm.core.utils import append_dims, as_sigma


@dataclass(frozen=True)
class EDMScalings:
    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def edm_scalings(sigma: torch.Tensor, sigma_data: float = 0.5) -> EDMScalings:
    """EDM Table 1: c_skip = σd²/(σ²+σd²), c_out = σσd/√(σ²+σd²), c_in = 1/√(σ²+σd²), c_noise = ¼ ln σ."""
    total = sigma**2 + sigma_data**2
    return EDMScalings(
        c_skip=sigma_data**2 / total,
        c_out=sigma * sigma_data / total.sqrt(),
        c_in=1 / total.sqrt(),
        c_noise=sigma.log() / 4,
    )


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """EDM λ(σ) = (σ² + σd²)/(σ·σd)², which makes the effective network target unit-variance."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def precondition(raw, x: torch.Tensor, sigma: torch.Tensor, sigma_data: float, **cond) -> torch.Tensor:
    """D(x, σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ))."""
    sc = edm_scalings(sigma, sigma_data)
    out = raw(append_dims(sc.c_in, x.ndim) * x, sc.c_noise, **cond)
    return append_dims(sc.c_skip, x.ndim) * x + append_dims(sc.c_out, x.ndim) * out.to(x.dtype)


def ctm_jump(x: torch.Tensor, t: torch.Tensor, s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """CTM eq. 6: G(x, t, s) = (s/t)·x + (1 − s/t)·g; exactly x when s = t."""
    ratio = append_dims(s / t, x.ndim)
    return ratio * x + (1 - ratio) * g


class EDMDenoiser(nn.Module):
    """Wraps a raw net ``F(x_in, c_noise, **cond)`` into the denoiser contract ``D(x, sigma, **cond)``."""

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        self.net = net
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma, **cond) -> torch.Tensor:
        return precondition(self.net, x, as_sigma(sigma, x), self.sigma_data, **cond)


class CTMPrecond(nn.Module):
    """Wraps a raw two-time net ``F(x_in, c_noise_t, c_noise_s, **cond)`` into CTM's g and G.

    ``forward(x, t, s)`` is the jump G; ``g(x, t, s)`` the EDM-preconditioned estimate (a denoiser when s = t).
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        self.net = net
        self.sigma_data = sigma_data

    def g(self, x: torch.Tensor, t, s, **cond) -> torch.Tensor:
        t, s = as_sigma(t, x), as_sigma(s, x)
        c_noise_s = s.log() / 4

        def raw(x_in, c_noise_t, **c):
            return self.net(x_in, c_noise_t, c_noise_s, **c)

        return precondition(raw, x, t, self.sigma_data, **cond)

    def forward(self, x: torch.Tensor, t, s, **cond) -> torch.Tensor:
        t, s = as_sigma(t, x), as_sigma(s, x)
        return ctm_jump(x, t, s, self.g(x, t, s, **cond))

    def denoiser(self):
        """The student's own denoiser D(x, σ) = g(x, σ, σ) (score evaluation, ODE sampling, likelihoods)."""
        return lambda x, sigma, **cond: self.g(x, sigma, sigma, **cond)
