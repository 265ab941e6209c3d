"""The teacher's loss and the pieces the latent text-to-sound recipes share (the CTM student's terms are in
``soundctm.train.ctm_terms``), in the shape the shared loop expects.

``loss_fn(batch, models, step, rng) -> (loss, logs)`` where a batch comes from ``LatentCacheDataset``:
``latent [B, C, H, W]``, ``tokens [B, L, D]``, ``mask [B, L]``.
"""

from __future__ import annotations

import torch

from soundctm.core import losses
from soundctm.core.guidance import classifier_free_guidance
from soundctm.core.precond import EDMDenoiser
from soundctm.core.utils import append_dims, rand, randn


def drop_captions(tokens: torch.Tensor, mask: torch.Tensor, uncond_tokens: torch.Tensor, uncond_mask: torch.Tensor,
                  p: float, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each sample's text by the unconditional one with probability p (classifier-free guidance)."""
    drop = rand(tokens.shape[0], rng, tokens.device) < p
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
        sigma = (p_mean + p_std * randn(b, rng, x0.device)).exp()
        noise = randn(x0.shape, rng, x0.device)
        D = EDMDenoiser(models[net], sigma_data)
        loss = losses.dsm_loss(D, x0, sigma, noise, sigma_data, tokens=tokens, mask=mask)
        return loss.mean(), {"train/dsm": loss.mean().detach()}

    return loss_fn


def guided_teacher(teacher_net, sigma_data: float, omega, uncond_tokens, uncond_mask):
    """The teacher's CFG-guided denoiser D_ω (both branches in one batch); ω a float, ``[B]`` or a condition name."""
    return classifier_free_guidance(EDMDenoiser(teacher_net, sigma_data), omega,
                                    {"tokens": uncond_tokens, "mask": uncond_mask})


def last_layer_weight(module: torch.nn.Module) -> torch.Tensor:
    """The output layer's weight (where CTM measures the adaptive weight)."""
    module = getattr(module, "module", module)  # DDP
    unet = getattr(module, "unet", module)
    return unet.conv_out.weight if hasattr(unet, "conv_out") else list(module.parameters())[-1]
