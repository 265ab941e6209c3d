"""Distil a trained teacher into a SoundCTM student G(x, t, s; ω) on a latent cache, on the shared loop.

    accelerate launch recipes/train_soundctm.py --config recipes/configs/soundctm_tiny.yaml [--set key=value ...]

The student starts as a copy of the teacher (plus zero-initialised s and ω embeddings), or from an exported student
(``init_student``); θ⁻ is the EMA ``train.ema_decays[0]``. The loss terms live in ``soundctm.train.ctm_terms``: CTM's
trajectory loss against the CFG-guided teacher with the adaptive DSM term, and optionally terms on cached teacher
trajectories (``ctm.pairs_path``: jumps, the whole-sampler rollout) and CTM's GAN term on teacher features.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from soundctm.config import ConfigError, add_config_args, config_from_args
from soundctm.data.cache import LatentCacheDataset, whole_batch
from soundctm.nn.discriminator import FeatureDiscriminator
from soundctm.nn.unet import TextUNet, TwoTimeTextUNet, architecture_mismatch
from soundctm.train import TrainConfig, Trainer, check_run_dir
from soundctm.train.ctm_terms import CTMConfig, GANConfig, cache_decoder, load_trajectories, soundctm_loss


@dataclass(frozen=True)
class SoundCTMRecipeConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir=Path("runs/soundctm_tiny"), lr=5e-5,
                                                                   ema_decays=(0.999,)))
    teacher_dir: str = "soundctm/pretrained/synthcaps-tiny/teacher"
    # warm start: an exported student folder (e.g. the bundle's student/) whose weights replace the teacher copy;
    # optimizer, EMA θ⁻ and step start afresh (a fine-tuning stage, not a resume: resume with train.resume)
    init_student: str = ""
    cache_dir: str = "cache/synthcaps-train"
    ctm: CTMConfig = field(default_factory=CTMConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    export_dir: str = ""  # empty: <out_dir>/student
    threads: int = 0

    def __post_init__(self):
        if not self.train.ema_decays:
            raise ValueError("train.ema_decays must name the EMA used as the stop-grad target θ⁻")
        if self.gan.enabled and self.gan.source == "pairs" and not self.ctm.pairs_path:
            raise ValueError("gan.source=pairs needs ctm.pairs_path (cached teacher trajectories)")


def warm_start(net: TwoTimeTextUNet, student_dir: str) -> TwoTimeTextUNet:
    """The exported student in ``student_dir``, checked to have ``net``'s (the teacher copy's) tensor shapes."""
    if not Path(student_dir, "config.json").is_file():
        raise FileNotFoundError(f"init_student {student_dir!r} is not an exported student folder (no config.json)")
    student = TwoTimeTextUNet.from_pretrained(student_dir)
    why = architecture_mismatch(net, student)
    if why:
        raise ValueError(f"init_student {student_dir!r} does not match the teacher's architecture: {why}")
    return student


def build(cfg: SoundCTMRecipeConfig):
    """(models, trainable names, loss_fn, data) of the run; raises ValueError / FileNotFoundError on bad inputs."""
    c = cfg.ctm
    data = LatentCacheDataset(cfg.cache_dir)
    teacher = TextUNet.from_pretrained(cfg.teacher_dir).eval().requires_grad_(False)
    net = TwoTimeTextUNet.from_teacher(teacher)
    if cfg.init_student:
        net = warm_start(net, cfg.init_student)
    levels = cache_decoder(data) if c.rollout_envelope_weight > 0 else None
    trajectories = load_trajectories(c, data.text, data.latent(0).shape) if c.pairs_path else None
    models, trainable = {"net": net, "teacher": teacher}, ["net"]
    if cfg.gan.enabled:
        chans = [*teacher.unet.config.block_out_channels, teacher.unet.config.block_out_channels[-1]]
        with torch.random.fork_rng(devices=[]):  # its initial weights follow train.seed, not the process's RNG
            torch.manual_seed(cfg.train.seed)
            models["disc"] = FeatureDiscriminator(chans, cfg.gan.hidden, cfg.gan.head)
        trainable.append("disc")
    loss_fn = soundctm_loss(c, cfg.gan, teacher, data.unconditional, cfg.train.ema_decays[0], trajectories, levels)
    return models, trainable, loss_fn, data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="train_soundctm", description=__doc__.splitlines()[0])
    add_config_args(parser)
    try:
        cfg = config_from_args(SoundCTMRecipeConfig, parser.parse_args(argv))
        check_run_dir(cfg.train)
        models, trainable, loss_fn, data = build(cfg)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"train_soundctm: {err}", file=sys.stderr)
        return 2
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with Trainer(cfg.train, run_config=cfg) as trainer:
        trainer.fit(models, loss_fn, data.batched(), trainable=trainable, collate_fn=whole_batch)
        out = Path(cfg.export_dir) if cfg.export_dir else trainer.out_dir / "student"
        trainer.export(out, "net", data={"cache_dir": cfg.cache_dir, "teacher_dir": cfg.teacher_dir,
                                         "num_samples": len(data)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
