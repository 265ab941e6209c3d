"""Train the text-conditioned latent diffusion teacher (EDM, classifier-free guidance) on a latent cache.

    soundctm cache --data synthcaps --n 8000 --vae soundctm/pretrained/synthcaps-tiny/vae --out cache/synthcaps-train
    accelerate launch recipes/train_teacher.py --config recipes/configs/teacher_tiny.yaml [--set train.steps=100]
    python recipes/train_teacher.py --config recipes/configs/teacher_tiny.yaml      # one process

Checkpoints land in ``train.out_dir`` (``--set train.resume=latest`` continues a run); at the end the EMA
network is exported to ``export_dir`` (config.json + model.safetensors + provenance.json).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from soundctm.config import ConfigError, add_config_args, config_from_args, to_dict
from soundctm.data.cache import LatentCacheDataset, whole_batch
from soundctm.nn.unet import UNET_PRESETS, TextUNet, UNetConfig
from soundctm.train import TrainConfig, Trainer, check_run_dir
from soundctm.train.tasks import teacher_loss_fn


@dataclass(frozen=True)
class TeacherDataConfig:
    cache_dir: str = "cache/synthcaps-train"
    caption_dropout: float = 0.1


@dataclass(frozen=True)
class DiffusionConfig:
    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2


@dataclass(frozen=True)
class TeacherRecipeConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir=Path("runs/teacher_tiny"), lr=2e-4))
    unet: UNetConfig = field(default_factory=lambda: UNET_PRESETS["tiny"])
    data: TeacherDataConfig = field(default_factory=TeacherDataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    export_dir: str = ""  # empty: <out_dir>/teacher
    export_ema: bool = True  # export the first EMA (false: the raw weights; better for runs short next to 1/(1−decay))
    threads: int = 0  # torch intra-op threads on CPU (0: torch's default)


def build_teacher(cfg: TeacherRecipeConfig, data: LatentCacheDataset) -> TextUNet:
    """A TextUNet whose channels and text width match the cached latents and embeddings."""
    c = data.latent(0).shape[0]
    d = data.text.tokens.shape[-1]
    unet_cfg = UNetConfig.from_dict({**to_dict(cfg.unet), "in_channels": c, "cross_attention_dim": d})
    return TextUNet.from_config(unet_cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="train_teacher", description=__doc__.splitlines()[0])
    add_config_args(parser)
    try:
        cfg = config_from_args(TeacherRecipeConfig, parser.parse_args(argv))
        check_run_dir(cfg.train)
        data = LatentCacheDataset(cfg.data.cache_dir)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"train_teacher: {err}", file=sys.stderr)
        return 2
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    uncond = data.unconditional
    loss_fn = teacher_loss_fn(uncond.tokens, uncond.mask, cfg.diffusion.sigma_data, cfg.data.caption_dropout,
                              cfg.diffusion.p_mean, cfg.diffusion.p_std)
    with Trainer(cfg.train, run_config=cfg) as trainer:
        trainer.fit({"net": build_teacher(cfg, data)}, loss_fn, data.batched(), collate_fn=whole_batch)
        out = Path(cfg.export_dir) if cfg.export_dir else trainer.out_dir / "teacher"
        trainer.export(out, "net", ema=cfg.export_ema, data={"cache_dir": cfg.data.cache_dir, "num_samples": len(data),
                                         **{k: v for k, v in data.index.items() if k in ("source", "text_encoder")}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
