"""Training-free restoration and guidance: samplers steered by a measurement or any differentiable loss.

Every sampler walks a descending σ schedule with a *clean estimate* ``x0_hat(x, σ, **cond) -> x̂₀`` and knows
nothing else about the model. Three providers: the teacher's denoiser D(x, σ) (a posterior mean, blurry at high
noise), the student's score g(x, σ, σ), and the CTM student's jump G(x, σ, σ_min) (a sample-like estimate in one
evaluation): ``denoiser_estimate``, ``score_estimate``, ``jump_estimate``. A step moves from x̂₀ to the next σ with
``ddim_step``: η = 0 reuses the current noise direction (the ODE, DDIM), η = 1 draws all of it afresh (ancestral;
with the CTM jump this is γ = 1 sampling).

- ``sample_dps``: DPS (Chung et al. 2023): gradient of a loss of x̂₀(x_t) through the network, on x_t.
- ``sample_mpgd``: MPGD (He et al. 2024): gradient steps on x̂₀ only (no backprop through the network),
  optionally projected back to the data manifold by an autoencoder, e.g. a latent model's VAE.
- ``sample_ddrm``: DDRM (Kawar et al. 2022) for a ``LinearOperator``: per spectral coordinate, observed ones pulled
  to the measurement, unobserved ones sampled (η, η_b).
- ``sample_gibbs_ddrm``: GibbsDDRM (Murata et al. 2023): DDRM steps on x alternating with Langevin / gradient
  steps on the operator's unknown parameters φ.
- ``sample_replacement``: the RePaint-style baseline for masks: the observed part replaced by the measurement
  noised to the current σ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from soundctm.core.operators import LinearOperator
from soundctm.core.utils import as_sigma, randn

# ---- clean-estimate providers ----


def denoiser_estimate(D):
    """x̂₀ = D(x, σ): the teacher's posterior mean."""
    return D


def score_estimate(G):
    """x̂₀ = g(x, σ, σ): the CTM student's own denoiser (G(x, t, s) with s → t; CTMPrecond.denoiser())."""
    return G.denoiser() if hasattr(G, "denoiser") else (lambda x, sigma, **cond: G(x, sigma, sigma, **cond))


def jump_estimate(G, sigma_min: float = 0.002):
    """x̂₀ = G(x, σ, σ_min): the CTM student's jump to the data end, one evaluation."""

    def x0_hat(x, sigma, **cond):
        sigma = as_sigma(sigma, x)
        return G(x, sigma, torch.full_like(sigma, sigma_min), **cond)

    return x0_hat


# ---- one step from x̂₀ to the next σ ----


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, sigma_next: float, eta: float = 0.0,
              generator: torch.Generator | None = None, sigma: float | None = None) -> torch.Tensor:
    """x at σ_next from a clean estimate x̂₀ and the noise direction ε̂ = (x − x̂₀)/σ: x̂₀ + σ_down·ε̂ + σ_up·z with
    σ_up = η·σ_next·√(1 − σ_next²/σ²) and σ_down = √(σ_next² − σ_up²) (η = 1 without ``sigma``: all fresh noise)."""
    if sigma_next <= 0:
        return x0
    ratio = 0.0 if sigma is None else min(1.0, (sigma_next / sigma) ** 2)
    up = eta * sigma_next * (1.0 - ratio) ** 0.5
    down = max(sigma_next**2 - up**2, 0.0) ** 0.5
    out = x0 + down * eps
    return out + up * randn(x0.shape, generator, x0.device, x0.dtype) if up > 0 else out


def _sigmas(sigmas) -> list[float]:
    s = [float(v) for v in sigmas]
    if len(s) < 2 or any(a <= b for a, b in zip(s, s[1:])) or s[-1] < 0:
        raise ValueError(f"sigmas must be descending, >= 2 points, ending at >= 0; got {s}")
    return s


def walk(x0_hat, x: torch.Tensor, sigmas, step, callback=None, **cond) -> torch.Tensor:
    """The loop every sampler without gradients through the network shares: per σ → σ_next, x̂₀ = x0_hat(x, σ)
    without gradients, then ``x, x̂₀ = step(i, x, x̂₀, σ, σ_next)`` (the step returns the estimate it used, e.g.
    guided); ``callback`` sees each step."""
    s = _sigmas(sigmas)
    for i, (sig, nxt) in enumerate(zip(s, s[1:])):
        with torch.no_grad():
            x0 = x0_hat(x, as_sigma(sig, x), **cond)
        x, x0 = step(i, x, x0, sig, nxt)
        if callback is not None:
            callback({"i": i, "x": x, "x0": x0, "sigma": sig})
    return x


# ---- DPS and MPGD: guidance by a loss of x̂₀ ----


def sample_dps(x0_hat, x: torch.Tensor, sigmas, loss, zeta: float, eta: float = 0.0, generator=None,
               callback=None, **cond) -> torch.Tensor:
    """DPS: x_{i+1} = step(x̂₀(x_i)) − ζ·∇_{x_i} loss(x̂₀(x_i)), the gradient taken through the network. ``loss(x0)``
    returns ``[B]`` (the norm ‖y − A(x̂₀)‖ gives DPS's step size ζ/‖y − A(x̂₀)‖ on the squared residual)."""
    s = _sigmas(sigmas)
    for i, (sig, nxt) in enumerate(zip(s, s[1:])):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            x0 = x0_hat(x, as_sigma(sig, x), **cond)
            grad = torch.autograd.grad(loss(x0).sum(), x)[0]
        x0 = x0.detach()
        x = ddim_step(x0, (x.detach() - x0) / sig, nxt, eta, generator, sig) - zeta * grad if nxt > 0 else x0
        if callback is not None:
            callback({"i": i, "x": x, "x0": x0, "sigma": sig})
    return x.detach()


def gradient_steps(x0: torch.Tensor, loss, step_size: float, n: int = 1) -> torch.Tensor:
    """n steps x̂₀ ← x̂₀ − step_size·∇ loss(x̂₀) on the clean estimate alone (MPGD's update)."""
    x0 = x0.detach()
    for _ in range(n):
        x0 = x0.requires_grad_(True)
        with torch.enable_grad():
            grad = torch.autograd.grad(loss(x0).sum(), x0)[0]
        x0 = (x0 - step_size * grad).detach()
    return x0


def sample_mpgd(x0_hat, x: torch.Tensor, sigmas, loss, step_size: float, eta: float = 0.0, n_grad: int = 1,
                project=None, guide_from: int = 0, generator=None, callback=None, **cond) -> torch.Tensor:
    """MPGD: x̂₀ from the network without gradients, ``n_grad`` gradient steps of ``loss`` on x̂₀ alone, optionally
    ``project(x̂₀)`` back to the manifold (an autoencoder round trip), then ``ddim_step`` to the next σ with the
    network's noise direction. Steps before ``guide_from`` are unguided."""

    def step(i, x, x0, sig, nxt):
        eps = (x - x0) / sig
        if i >= guide_from:
            x0 = gradient_steps(x0, loss, step_size, n_grad)
            if project is not None:
                with torch.no_grad():
                    x0 = project(x0)
        return ddim_step(x0, eps, nxt, eta, generator, sig), x0

    return walk(x0_hat, x, sigmas, step, callback, **cond)


# ---- DDRM and GibbsDDRM: linear operators in spectral space ----


def ddrm_update(x: torch.Tensor, x0: torch.Tensor, y: torch.Tensor, op, sigma: float, sigma_next: float,
                sigma_y: float, eta: float, eta_b: float, generator=None) -> torch.Tensor:
    """One DDRM step (Kawar et al. 2022, eq. 7-8, in σ form) from x at σ with estimate x̂₀ to σ_next."""
    z, z0 = op.to_spectral(x), op.to_spectral(x0)
    noise = randn(z.shape, generator, z.device, z.dtype)
    r = op.rank
    ybar = op.y_spectral(y).to(z)
    # unobserved coordinates: DDIM-like, the noise direction kept with weight √(1 − η²)
    out = z0 + (1 - eta**2) ** 0.5 * sigma_next * (z - z0) / sigma + eta * sigma_next * noise
    if r:
        s_obs = sigma_y / op.s[:r].to(z)  # the measurement's noise level per observed coordinate
        below = z0[:, :r] + (1 - eta**2) ** 0.5 * sigma_next * (ybar - z0[:, :r]) / s_obs.clamp(min=1e-12) \
            + eta * sigma_next * noise[:, :r]
        above = (1 - eta_b) * z0[:, :r] + eta_b * ybar \
            + (sigma_next**2 - (eta_b * s_obs) ** 2).clamp(min=0).sqrt() * noise[:, :r]
        out = torch.cat([torch.where(sigma_next < s_obs, below, above), out[:, r:]], 1)
    return op.from_spectral(out)


def sample_ddrm(x0_hat, x: torch.Tensor, sigmas, y: torch.Tensor, op, sigma_y: float = 0.0, eta: float = 0.85,
                eta_b: float = 1.0, generator=None, callback=None, **cond) -> torch.Tensor:
    """DDRM along ``sigmas`` (ending at 0) for y = A x + σ_y·n with A a ``LinearOperator``."""

    def step(i, x, x0, sig, nxt):
        return ddrm_update(x, x0, y, op, sig, nxt, sigma_y, eta, eta_b, generator), x0

    return walk(x0_hat, x, sigmas, step, callback, **cond)


@dataclass
class GibbsResult:
    """GibbsDDRM's output: the samples and the estimated operator parameters (one φ per sample)."""

    x: torch.Tensor
    phi: torch.Tensor
    phi_path: list[torch.Tensor]


def phi_updates(phi: torch.Tensor, x0: torch.Tensor, y: torch.Tensor, make_matrix, sigma_y: float, lr: float,
                n: int, temperature: float, generator=None, bounds=(None, None)) -> torch.Tensor:
    """n Langevin steps on φ ``[B, P]`` for p(φ | x̂₀, y) ∝ exp(−‖y − A_φ x̂₀‖² / 2σ_y²) (temperature 0: gradient
    descent); ``make_matrix(φ_b) -> [m, n]`` builds one sample's operator matrix, differentiable in φ."""
    phi = phi.detach()
    flat = x0.detach().flatten(1)
    for _ in range(n):
        phi = phi.requires_grad_(True)
        with torch.enable_grad():
            res = torch.stack([y[b] - make_matrix(phi[b]).to(flat) @ flat[b] for b in range(len(flat))])
            energy = res.pow(2).sum() / (2 * max(sigma_y, 1e-3) ** 2)
            grad = torch.autograd.grad(energy, phi)[0]
        phi = phi.detach() - lr * grad
        if temperature > 0:
            phi = phi + (2 * lr * temperature) ** 0.5 * randn(phi.shape, generator, phi.device, phi.dtype)
        phi = phi.clamp(*bounds)
    return phi


def sample_gibbs_ddrm(x0_hat, x: torch.Tensor, sigmas, y: torch.Tensor, make_matrix, phi0: torch.Tensor,
                      sigma_y: float = 0.0, eta: float = 0.85, eta_b: float = 1.0, phi_lr: float = 1e-3,
                      phi_steps: int = 5, phi_from: float = 0.3, temperature: float = 0.0, bounds=(None, None),
                      generator=None, **cond) -> GibbsResult:
    """GibbsDDRM for an operator with unknown parameters φ: each step a DDRM update of x under A_φ̂ (per sample),
    then, once ``phi_from`` of the steps are done (x̂₀ has structure), ``phi_updates`` on φ from x̂₀ and y."""
    n_steps = len(_sigmas(sigmas)) - 1
    path = [phi0.detach().clone().reshape(x.shape[0], -1)]  # φ after each update; path[-1] is the current one

    def step(i, x, x0, sig, nxt):
        phi = path[-1]
        if i >= phi_from * n_steps:
            phi = phi_updates(phi, x0, y, make_matrix, sigma_y, phi_lr, phi_steps, temperature, generator, bounds)
            path.append(phi.clone())
        ops = [LinearOperator(make_matrix(p).detach(), x.shape[1:]) for p in phi]
        return torch.cat([ddrm_update(x[b:b + 1], x0[b:b + 1], y[b:b + 1], ops[b], sig, nxt, sigma_y, eta, eta_b,
                                      generator) for b in range(len(ops))]), x0

    x = walk(x0_hat, x, sigmas, step, **cond)
    return GibbsResult(x, path[-1], path)


# ---- the replacement baseline ----


def sample_replacement(x0_hat, x: torch.Tensor, sigmas, known: torch.Tensor, mask: torch.Tensor, eta: float = 1.0,
                       generator=None, callback=None, **cond) -> torch.Tensor:
    """RePaint-style inpainting without resampling: each step's observed part (``mask`` True) is the known signal
    noised to the next σ; the rest follows the sampler; the output keeps ``known`` where observed."""
    m = mask.to(x.dtype).expand_as(x)

    def step(i, x, x0, sig, nxt):
        x = ddim_step(x0, (x - x0) / sig, nxt, eta, generator, sig)
        noised = known + nxt * randn(x.shape, generator, x.device, x.dtype) if nxt > 0 else known
        return m * noised + (1 - m) * x, x0

    return walk(x0_hat, x, sigmas, step, callback, **cond)


__all__ = ["GibbsResult", "ddim_step", "ddrm_update", "denoiser_estimate", "gradient_steps",
           "jump_estimate", "phi_updates", "sample_ddrm", "sample_dps", "sample_gibbs_ddrm", "sample_mpgd",
           "sample_replacement", "score_estimate", "walk"]
