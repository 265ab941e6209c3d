"""Train the mel VAE (`soundctm.audio.vae.AudioVAE`) on SynthCaps clips with the shared loop (`soundctm.train`).

Log-mels of the training clips are computed once and held in memory (cached under ``<out_dir>``); each step
reconstructs random ``crop_frames``-frame crops (the VAE is convolutional, so it decodes full clips later).
Loss: L1 (+ optional L2 and multi-resolution L1) of the normalised mel + ``kl_weight`` · mean KL per latent
element. After training the latent scale factor is set to 1/std of the training latents (Rombach et al. 2022,
Sec. 4.3), held-out mel L1 is measured, and the EMA model is exported with ``save_pretrained`` + provenance.

    python recipes/train_vae.py --config recipes/configs/vae_tiny.yaml [--set train.steps=100 ...]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from soundctm.audio.mel import MelConfig, MelSpectrogram
from soundctm.audio.vae import AudioVAE, AudioVAEConfig
from soundctm.config import ConfigError, add_config_args, config_from_args
from soundctm.core.utils import randint
from soundctm.fileio import atomic_path
from soundctm.train import TrainConfig, Trainer, check_run_dir, ema_key


@dataclass(frozen=True)
class ModelConfig:
    latent_channels: int = 8
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    frame_multiple: int = 16


@dataclass(frozen=True)
class DataConfig:
    n_train: int = 3000
    n_val: int = 64
    seed: int = 0
    crop_frames: int = 64  # training crop; a multiple of the VAE down-sampling
    n_scale: int = 512  # training clips used to measure the latent scale factor


@dataclass(frozen=True)
class LossConfig:
    kl_weight: float = 2e-5  # times the mean KL per latent element
    l2_weight: float = 0.0
    multires_weight: float = 0.0  # L1 of 2× and 4× average-pooled mels
    loud_weight: float = 0.0  # extra L1 weight on bins within loud_range_db of their frame's maximum
    loud_range_db: float = 30.0
    mel_grad_weight: float = 0.0  # L1 of the difference along the mel axis (keeps spectral peaks sharp)
    detail_from_step: int = 0  # the loud / mel-grad terms start at this optimizer step


@dataclass(frozen=True)
class VAERecipeConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir=Path("runs/vae_tiny")))
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    export_dir: Path = Path("runs/vae_tiny/vae")
    threads: int = 1


def synthcaps_mels(n: int, seed: int, split: str, batch: int = 64) -> torch.Tensor:
    """Log-mels of the first ``n`` SynthCaps clips of (seed, split): ``[n, n_mels, frames]``."""
    from soundctm.data.synthcaps import SynthCaps

    data, mel_fn, out = SynthCaps(n, seed=seed, split=split), MelSpectrogram(MelConfig()), []
    for start in range(0, n, batch):
        waves = torch.stack([torch.from_numpy(data[i][0]) for i in range(start, min(n, start + batch))])
        out.append(mel_fn(waves))
    return torch.cat(out)


def cached_mels(out_dir: Path, n: int, seed: int, split: str) -> torch.Tensor:
    """`synthcaps_mels`, computed once and cached as safetensors in ``out_dir``."""
    from safetensors.torch import load_file, save_file

    path = out_dir / f"mels-{split}-n{n}-seed{seed}.safetensors"
    if path.is_file():
        return load_file(str(path))["mels"]
    mels = synthcaps_mels(n, seed, split)
    with atomic_path(path) as tmp:  # creates out_dir
        save_file({"mels": mels.contiguous()}, str(tmp))
    return mels


def random_crops(mels: torch.Tensor, length: int, rng: torch.Generator) -> torch.Tensor:
    """One random ``length``-frame window per sample: ``[B, M, F] → [B, M, length]``."""
    starts = randint(0, mels.shape[-1] - length + 1, (mels.shape[0],), rng, mels.device)
    index = starts[:, None] + torch.arange(length, device=mels.device)
    return torch.gather(mels, 2, index[:, None, :].expand(-1, mels.shape[1], -1))


def multires_l1(recon: torch.Tensor, target: torch.Tensor, factors=(2, 4)) -> torch.Tensor:
    """Mean L1 between average-pooled mels at each factor: Σ_k |pool_k(x̂) − pool_k(x)|."""
    return sum(F.l1_loss(F.avg_pool1d(recon, k), F.avg_pool1d(target, k)) for k in factors)


def loud_mask(mel: torch.Tensor, range_db: float) -> torch.Tensor:
    """1 where a bin is within ``range_db`` of its frame's loudest bin (log-mel is ln of magnitude: 20/ln 10 dB)."""
    range_nat = range_db * math.log(10) / 20
    return (mel >= mel.amax(dim=1, keepdim=True) - range_nat).float()


def mel_axis_l1(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 between mel-axis differences, |Δ_m x̂ − Δ_m x|: penalises smeared spectral peaks."""
    return F.l1_loss(recon.diff(dim=1), target.diff(dim=1))


def make_loss_fn(cfg: LossConfig, crop_frames: int, mel_std: float):
    """Reconstruction of random crops through a posterior sample, errors in units of the mel std."""

    def loss_fn(batch, models, step, rng):
        mel = random_crops(batch[0], crop_frames, rng)
        out = models["vae"](mel, sample=True)
        l1 = F.l1_loss(out.recon, mel) / mel_std
        kl = out.kl.mean() / out.latent[0].numel()
        loss = l1 + cfg.kl_weight * kl
        if cfg.l2_weight:
            loss = loss + cfg.l2_weight * F.mse_loss(out.recon, mel) / mel_std**2
        if cfg.multires_weight:
            loss = loss + cfg.multires_weight * multires_l1(out.recon, mel) / mel_std
        detail = step >= cfg.detail_from_step
        if cfg.loud_weight and detail:
            loud = loud_mask(mel, cfg.loud_range_db)
            loss = loss + cfg.loud_weight * ((out.recon - mel).abs() * loud).sum() / loud.sum() / mel_std
        if cfg.mel_grad_weight and detail:
            loss = loss + cfg.mel_grad_weight * mel_axis_l1(out.recon, mel) / mel_std
        return loss, {"train/l1": l1.detach(), "train/kl": kl.detach()}

    return loss_fn


def build_vae(cfg: ModelConfig, mel_mean: float, mel_std: float) -> AudioVAE:
    return AudioVAE(AudioVAEConfig(
        latent_channels=cfg.latent_channels, block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block, norm_num_groups=cfg.norm_num_groups,
        frame_multiple=cfg.frame_multiple, mel_mean=mel_mean, mel_std=mel_std,
    ))  # fmt: skip


@torch.no_grad()
def latent_scale(vae: AudioVAE, mels: torch.Tensor, batch: int = 64) -> float:
    """1 / std of the unscaled posterior-mean latents of ``mels`` (Rombach et al. 2022)."""
    z = torch.cat([vae.encode(mels[i : i + batch]) / vae.scale_factor for i in range(0, len(mels), batch)])
    return float(1.0 / z.std())


@torch.no_grad()
def mel_l1(vae: AudioVAE, mels: torch.Tensor, batch: int = 32) -> float:
    """Mean |decode(encode(mel)) − mel| over full clips (natural-log mel units)."""
    errs = [(vae.decode(vae.encode(m), m.shape[-1]) - m).abs().mean() for m in mels.split(batch)]
    return float(torch.stack(errs).mean())


def parse_config(argv: list[str]) -> VAERecipeConfig:
    parser = argparse.ArgumentParser(prog="train_vae", description=__doc__.splitlines()[0])
    add_config_args(parser)
    return config_from_args(VAERecipeConfig, parser.parse_args(argv))


def train(cfg: VAERecipeConfig) -> dict[str, float]:
    """Precompute mels, fit, set the scale factor, evaluate, export; returns the metrics."""
    torch.set_num_threads(cfg.threads)
    start = time.time()
    out_dir, d = Path(cfg.train.out_dir), cfg.data
    mels = cached_mels(out_dir, d.n_train, d.seed, "train")
    val = cached_mels(out_dir, d.n_val, d.seed, "heldout")
    mel_mean, mel_std = float(mels.mean()), float(mels.std())
    with Trainer(cfg.train, run_config=cfg) as trainer:
        trainer.fit({"vae": build_vae(cfg.model, mel_mean, mel_std)},
                    make_loss_fn(cfg.loss, d.crop_frames, mel_std), TensorDataset(mels))  # fmt: skip
        decay = cfg.train.ema_decays[0] if cfg.train.ema_decays else None
        vae = (trainer.models[ema_key("vae", decay)] if decay else trainer.unwrapped("vae")).eval()
        vae.set_scale_factor(latent_scale(vae, mels[: d.n_scale]))
        metrics = {
            "scale_factor": vae.scale_factor,
            "heldout_mel_l1": mel_l1(vae, val),
            "train_mel_l1": mel_l1(vae, mels[: d.n_val]),
            "wall_clock_s": time.time() - start,
        }
        data = {"name": "SynthCaps", "train": {"n": d.n_train, "seed": d.seed, "split": "train"},
                "heldout": {"n": d.n_val, "seed": d.seed, "split": "heldout"}}  # fmt: skip
        trainer.export(cfg.export_dir, "vae", ema=decay is not None, data=data, metrics=metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_config(sys.argv[1:] if argv is None else argv)
        check_run_dir(cfg.train)
    except (ConfigError, ValueError) as err:
        print(f"train_vae: {err}", file=sys.stderr)
        return 2
    metrics = train(cfg)
    print(" ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
