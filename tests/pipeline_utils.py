"""A tiny random SoundCTM pipeline folder for tests (seconds to build, real MiniLM text encoder)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from soundctm.audio.text import build_text_encoder
from soundctm.audio.vae import AudioVAE, AudioVAEConfig
from soundctm.audio.vocoder import GriffinLimVocoder
from soundctm.nn.unet import UNET_PRESETS, TextUNet, TwoTimeTextUNet
from soundctm.pipeline import PipelineConfig, SoundCTM

_TEXT = {}


def text_encoder():
    if "minilm" not in _TEXT:
        _TEXT["minilm"] = build_text_encoder("minilm")
    return _TEXT["minilm"]


def make_pipeline(path: Path | None = None, seed: int = 0) -> SoundCTM:
    torch.manual_seed(seed)
    vae = AudioVAE(AudioVAEConfig(latent_channels=4, block_out_channels=(8, 16, 16), norm_num_groups=4,
                                  frame_multiple=8))
    unet_cfg = replace(UNET_PRESETS["debug"], cross_attention_dim=384)
    teacher = TextUNet.from_config(unet_cfg)
    student = TwoTimeTextUNet.from_teacher(teacher)
    with torch.no_grad():
        student.unet.time_embedding.cond_proj.weight.normal_(0, 0.1)
    n_frames = 201
    cfg = PipelineConfig(latent_shape=vae.latent_shape(n_frames), n_frames=n_frames,
                         vocoder={"name": "griffin-lim", "n_iter": 4})
    voc = GriffinLimVocoder(vae.config.mel, n_iter=4)
    pipe = SoundCTM(vae, voc, text_encoder(), student, cfg, teacher)
    if path is not None:
        pipe.save_pretrained(path)
    return pipe
