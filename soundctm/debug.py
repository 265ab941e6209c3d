"""A debug-size SoundCTM pipeline with random weights, for tests and quick checks of scripts (seconds on CPU).

    pipe = debug_pipeline()                     # random VAE / teacher / student, real MiniLM text encoder
    debug_pipeline("runs/debug")                # the same, also saved as a pipeline folder

It generates noise, not sound: it checks that code runs end to end, as audiocraft's ``debug`` models do.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

import torch

from soundctm.audio.text import build_text_encoder
from soundctm.audio.vae import AudioVAE, AudioVAEConfig
from soundctm.audio.vocoder import GriffinLimVocoder
from soundctm.nn.unet import UNET_PRESETS, TextUNet, TwoTimeTextUNet
from soundctm.pipeline import PipelineConfig, SoundCTM


@cache
def debug_text_encoder():
    """The MiniLM text encoder, built once per process (the slow part of a debug pipeline)."""
    return build_text_encoder("minilm")


def debug_pipeline(path: str | Path | None = None, seed: int = 0) -> SoundCTM:
    """A tiny random pipeline (seeded by ``seed``); saved to ``path`` when given."""
    torch.manual_seed(seed)
    vae = AudioVAE(AudioVAEConfig(latent_channels=4, block_out_channels=(8, 16, 16), norm_num_groups=4,
                                  frame_multiple=8))
    teacher = TextUNet.from_config(replace(UNET_PRESETS["debug"], cross_attention_dim=384))
    student = TwoTimeTextUNet.from_teacher(teacher)
    with torch.no_grad():
        student.unet.time_embedding.cond_proj.weight.normal_(0, 0.1)  # ω matters, unlike at initialisation
    n_frames = 201
    cfg = PipelineConfig(latent_shape=vae.latent_shape(n_frames), n_frames=n_frames,
                         vocoder={"name": "griffin-lim", "n_iter": 4})
    pipe = SoundCTM(vae, GriffinLimVocoder(vae.config.mel, n_iter=4), debug_text_encoder(), student, cfg, teacher)
    if path is not None:
        pipe.save_pretrained(path)
    return pipe
