"""Loss functions of the latent text-to-sound recipes, in the shape the shared loop expects.

``loss_fn(batch, models, step, rng) -> (loss, logs)`` where a batch comes from ``LatentCacheDataset``:
``latent [B, C, H, W]``, ``tokens [B, L, D]``, ``mask [B, L]``.
"""

from __future__ import annotations

import torch

from soundctm.core import losses, schedule
from soundctm.core.guidance import classifier_free_guidance
from soundctm.core.precond import CTMPrecond, EDMDenoiser
from soundctm.core.utils import append_dims


def drop_captions(tokens: torch.Tensor, mask: torch.Tensor, uncond_tokens: torch.Tensor, uncond_mask: torch.Tensor,
                  p: float, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each sample's text by the unconditional one with probability p (classifier-free guidance)."""
    drop = torch.rand(tokens.shape[0], generator=rng, device=tokens.device) < p
    tokens = torch.where(append_dims(drop, tokens.ndim), uncond_tokens.to(tokens), tokens)
    mask = torch.where(append_dims(drop, mask.ndim), uncond_mask.to(mask.device), mask)
    return tokens, mask


def teacher_loss_fn(uncond_tokens, uncond_mask, sigma_data: float, caption_dropout: float = 0.1,
                    p_mean: float = -1.2, p_std: float = 1.2, net: str = "net"):
    """EDM denoising score matching with caption dropout; σ log-normal (EDM eq. 2 with λ(σ))."""

    def loss_fn(batch, models, step, rng):
        x0 = batch["latent"]
        tokens, mask = drop_captions(batch["tokens"], batch["mask"], uncond_tokens, uncond_mask,
                                     caption_dropout, rng)
        b = x0.shape[0]
        sigma = (p_mean + p_std * torch.randn(b, generator=rng, device=x0.device)).exp()
        noise = torch.randn(x0.shape, generator=rng, device=x0.device)
        D = EDMDenoiser(models[net], sigma_data)
        loss = losses.dsm_loss(D, x0, sigma, noise, sigma_data, tokens=tokens, mask=mask)
        return loss.mean(), {"train/dsm": loss.mean().detach()}

    return loss_fn


def guided_teacher(teacher_net, sigma_data: float, omega, uncond_tokens, uncond_mask):
    """The teacher's CFG-guided denoiser D_ω (both branches in one batch); ω a float, ``[B]`` or a condition name."""
    return classifier_free_guidance(EDMDenoiser(teacher_net, sigma_data), omega,
                                    {"tokens": uncond_tokens, "mask": uncond_mask})


def ctm_loss_fn(uncond_tokens, uncond_mask, sigma_data: float, grid_size: int = 40, max_k: int | None = None,
                k_weighting: str = "linear", omega_range: tuple[float, float] = (1.0, 5.0), ema_decay: float = 0.999,
                match: str = "sigma_min", distance: str = "l2", dsm_weight: float = 1.0, dsm_adaptive: bool = True,
                caption_dropout: float = 0.1, features=None, net: str = "net", teacher: str = "teacher"):
    """SoundCTM distillation loss: ctm_loss with the CFG-guided teacher (ω ~ U[ω_min, ω_max] per sample) as
    the trajectory and the ω-conditioned student; plus DSM on the student's g(x, σ, σ) (ω = 1) weighted
    adaptively (CTM eq. 10). The condition ``omega`` reaches the student's net and sets the teacher's scale.

    ``features(x, sigma, tokens, mask) -> list[Tensor]`` turns on the feature distance (e.g. the frozen teacher
    UNet's multi-level features at the matching noise level); otherwise ``distance`` names l2 / pseudo_huber.
    """
    from soundctm.train.ema import ema_key

    grid = schedule.ctm_grid(grid_size)

    def loss_fn(batch, models, step, rng):
        x0 = batch["latent"]
        dev, b = x0.device, x0.shape[0]
        # the student also learns the unconditional model (ν-sampling needs it): drop captions as the teacher did
        tokens, mask = drop_captions(batch["tokens"], batch["mask"], uncond_tokens, uncond_mask, caption_dropout, rng)
        omega = omega_range[0] + (omega_range[1] - omega_range[0]) * torch.rand(b, generator=rng, device=dev)
        student = CTMPrecond(models[net], sigma_data)
        target = CTMPrecond(models[ema_key(net, ema_decay)], sigma_data)
        D_w = guided_teacher(models[teacher], sigma_data, "omega", uncond_tokens, uncond_mask)
        if features is not None:
            dist = losses.feature_distance(lambda x, sg: features(x, sg, tokens, mask))
        else:
            dist = losses.DISTANCES[distance]
        g = grid.to(dev)
        times = losses.sample_ctm_times(b, g, max_k, k_weighting, generator=rng)
        noise = torch.randn(x0.shape, generator=rng, device=dev)
        out = losses.ctm_loss(student, target, D_w, x0, g, dist, match=match, times=times, noise=noise,
                              tokens=tokens, mask=mask, omega=omega)
        loss = out.loss.mean()
        logs = {"train/ctm": loss.detach(), "train/k": times.k.float().mean()}
        if dsm_weight > 0:
            sigma = schedule.sample_half_lognormal_half_grid(b, g, generator=rng)
            dsm = losses.dsm_loss(student.denoiser(), x0, sigma, torch.randn(x0.shape, generator=rng, device=dev),
                                  sigma_data, tokens=tokens, mask=mask, omega=torch.ones_like(sigma)).mean()
            lam = losses.adaptive_weight(loss, dsm, last_layer_weight(models[net])) if dsm_adaptive else 1.0
            loss = loss + dsm_weight * lam * dsm
            logs.update({"train/dsm": dsm.detach(), "train/dsm_weight": torch.as_tensor(lam)})
        return loss, logs

    return loss_fn


def last_layer_weight(module: torch.nn.Module) -> torch.Tensor:
    """The output layer's weight (where CTM measures the adaptive weight)."""
    module = getattr(module, "module", module)  # DDP
    unet = getattr(module, "unet", module)
    return unet.conv_out.weight if hasattr(unet, "conv_out") else list(module.parameters())[-1]
