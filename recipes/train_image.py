"""Image recipe on the shared core and loop: an EDM teacher and its CTM student on the 8×8 scikit-learn digits.

``mode: teacher`` trains a class-conditional `ImageUNet` with the core's ``dsm_loss`` (EDM log-normal σ, label
dropout for classifier-free guidance). ``mode: ctm`` distils a saved teacher into a two-time student with the
core's ``ctm_loss`` (CTM grid, Heun teacher solve, stop-gradient EMA target θ⁻), a distance chosen by name
(l2, pseudo-Huber, or the feature maps of the project's digit classifier) and an optional adaptive-weighted DSM
term on the student's own denoiser g(x, σ, σ). The student learns the teacher's trajectory at one fixed CFG scale.
Both export ``<out_dir>/model`` (config.json + model.safetensors + provenance.json).

    python recipes/train_image.py --config recipes/configs/digits_teacher.yaml
    python recipes/train_image.py --config recipes/configs/digits_ctm.yaml --set ctm.teacher=runs/digits_teacher/model
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import TensorDataset

from soundctm.config import ConfigError, add_config_args, config_from_args
from soundctm.core import losses, schedule
from soundctm.core.guidance import classifier_free_guidance
from soundctm.core.losses import adaptive_weight, ctm_loss, dsm_loss, feature_distance
from soundctm.core.precond import CTMPrecond, EDMDenoiser
from soundctm.core.samplers import sample_ctm, sample_ode
from soundctm.core.utils import rand, randn
from soundctm.data.digits import DigitsConfig, load_digit_split
from soundctm.metrics.digits import DigitClassifier, classifier_feature_maps
from soundctm.nn.image import ImageUNet, ImageUNetConfig
from soundctm.train import TrainConfig, Trainer, check_run_dir, ema_key

MODES = ("teacher", "ctm")


@dataclass(frozen=True)
class DiffusionConfig:
    p_mean: float = -1.2  # EDM training density ln σ ~ N(p_mean, p_std²)
    p_std: float = 1.2
    label_dropout: float = 0.1  # probability of the null label (teacher mode; enables CFG)


@dataclass(frozen=True)
class CTMConfig:
    teacher: Path | None = None  # exported teacher folder
    grid: int = 18  # N points of the CTM time grid
    max_k: int | None = 4  # most teacher solver steps t → u
    distance: str = "l2"  # one of DISTANCE_NAMES
    classifier: Path | None = None  # digit classifier folder, for distance "classifier"
    target_decay: float = 0.99  # the EMA decay used as the stop-gradient target θ⁻ (must be in train.ema_decays)
    match: Literal["sigma_min", "s"] = "sigma_min"
    guidance_scale: float = 1.0  # CFG scale ω of the teacher being distilled
    dsm_weight: float = 0.0  # 0 disables the DSM term; else scaled by the adaptive weight
    # probability of the null label for the student and the teacher's target solve alike: the student also learns
    # the unconditional trajectory (what unconditional restoration and classifier guidance start from); 0 = off
    label_dropout: float = 0.0


@dataclass(frozen=True)
class ImageRecipeConfig:
    mode: str = "teacher"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir=Path("runs/digits_teacher")))
    model: ImageUNetConfig = field(default_factory=ImageUNetConfig)
    data: DigitsConfig = field(default_factory=DigitsConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    ctm: CTMConfig = field(default_factory=CTMConfig)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.model.size != self.data.size:
            raise ValueError(f"model.size={self.model.size} must equal data.size={self.data.size}")
        if not 0.0 <= self.diffusion.label_dropout < 1.0:
            raise ValueError(f"diffusion.label_dropout must lie in [0, 1), got {self.diffusion.label_dropout}")
        if self.mode == "ctm":
            check_ctm_config(self.ctm, self.train)


DISTANCE_NAMES = ("l2", "pseudo_huber", "classifier")


def check_ctm_config(ctm: CTMConfig, train: TrainConfig) -> None:
    """ValueErrors naming the field for CTM settings that cannot work."""
    if ctm.teacher is None:
        raise ValueError("ctm.teacher must name an exported teacher folder in mode 'ctm'")
    if ctm.distance not in DISTANCE_NAMES:
        raise ValueError(f"ctm.distance must be one of {DISTANCE_NAMES}, got {ctm.distance!r}")
    if ctm.distance == "classifier" and ctm.classifier is None:
        raise ValueError("ctm.classifier must name a digit classifier folder for distance 'classifier'")
    if ctm.target_decay not in train.ema_decays:
        raise ValueError(f"ctm.target_decay={ctm.target_decay} must be one of train.ema_decays {train.ema_decays}")
    if ctm.grid < 2 or (ctm.max_k is not None and ctm.max_k < 1):
        raise ValueError(f"ctm.grid must be >= 2 and ctm.max_k >= 1 (or null), got {ctm.grid}, {ctm.max_k}")
    if not 0.0 <= ctm.label_dropout < 1.0:
        raise ValueError(f"ctm.label_dropout must lie in [0, 1), got {ctm.label_dropout}")
    if ctm.dsm_weight < 0 or ctm.guidance_scale < 0:
        raise ValueError(f"ctm.dsm_weight and ctm.guidance_scale must be >= 0, got {ctm.dsm_weight}, "
                         f"{ctm.guidance_scale}")


# ---------------------------------------------------------------- models as core callables

def teacher_denoiser(net: ImageUNet, guidance_scale: float = 1.0):
    """The teacher's D(x, σ, labels=…), classifier-free guided with scale ω when ω ≠ 1."""
    D = EDMDenoiser(net, net.config.sigma_data)
    return classifier_free_guidance(D, guidance_scale, {"labels": net.null_labels(1)})


def student_jump(net: ImageUNet) -> CTMPrecond:
    """The student's G(x, t, s, labels=…) (and ``.g``, ``.denoiser()``)."""
    return CTMPrecond(net, net.config.sigma_data)


def drop_labels(labels: torch.Tensor, p: float, null: int, rng: torch.Generator) -> torch.Tensor:
    """Replace each label by the null label ``null`` with probability p (CFG training)."""
    if p == 0:
        return labels
    drop = rand(labels.shape, rng, labels.device) < p
    return torch.where(drop, torch.full_like(labels, null), labels)


def last_layer_weight(net) -> torch.nn.Parameter:
    """The output conv weight of a (possibly DDP-wrapped) `ImageUNet` (where the adaptive weight is measured)."""
    return getattr(net, "module", net).conv_out.weight


# ---------------------------------------------------------------- losses

def make_teacher_loss(cfg: ImageRecipeConfig):
    """DSM loss of the teacher (EDM eq. 2 with log-normal σ and label dropout)."""
    diff, null = cfg.diffusion, cfg.model.num_classes

    def loss_fn(batch, models, step, rng):
        x0, labels = batch
        sigma = schedule.sample_lognormal(len(x0), diff.p_mean, diff.p_std, generator=rng, device=x0.device)
        noise = randn(x0.shape, rng, x0.device)
        D = EDMDenoiser(models["net"], cfg.model.sigma_data)
        labels = drop_labels(labels, diff.label_dropout, null, rng)
        return dsm_loss(D, x0, sigma, noise, cfg.model.sigma_data, labels=labels).mean(), {}

    return loss_fn


def make_distance(ctm: CTMConfig, classifier: DigitClassifier | None = None):
    """The CTM distance d(a, b, σ) -> [B] named by ``ctm.distance``."""
    if ctm.distance == "classifier":
        return feature_distance(classifier_feature_maps(classifier))
    return losses.DISTANCES[ctm.distance]


def make_ctm_loss(cfg: ImageRecipeConfig, classifier: DigitClassifier | None = None):
    """CTM loss of the student against the frozen (guided) teacher and the EMA target θ⁻ (+ adaptive DSM)."""
    ctm, sd = cfg.ctm, cfg.model.sigma_data
    grid = schedule.ctm_grid(ctm.grid)
    distance = make_distance(ctm, classifier)
    target_name = ema_key("student", ctm.target_decay)

    def loss_fn(batch, models, step, rng):
        x0, labels = batch
        labels = drop_labels(labels, ctm.label_dropout, cfg.model.num_classes, rng)  # draws nothing at 0
        student, target = CTMPrecond(models["student"], sd), CTMPrecond(models[target_name], sd)
        teacher = teacher_denoiser(models["teacher"], ctm.guidance_scale)
        noise = randn(x0.shape, rng, x0.device)
        out = ctm_loss(student, target, teacher, x0, grid.to(x0.device), distance=distance, match=ctm.match,
                       max_k=ctm.max_k, noise=noise, generator=rng, labels=labels)
        loss = out.loss.mean()
        logs = {"train/ctm": loss.detach()}
        if ctm.dsm_weight > 0:
            sigma = schedule.sample_half_lognormal_half_grid(len(x0), grid.to(x0.device), generator=rng)
            dsm = dsm_loss(student.denoiser(), x0, sigma, sigma_data=sd, labels=labels).mean()
            w = adaptive_weight(loss, dsm, last_layer_weight(models["student"]))
            loss = loss + ctm.dsm_weight * w * dsm
            logs.update({"train/dsm": dsm.detach(), "train/dsm_weight": w})
        return loss, logs

    return loss_fn


# ---------------------------------------------------------------- sampling (also used by benchmarks/digits.py)

def teacher_samples(net: ImageUNet, x_T: torch.Tensor, labels: torch.Tensor, steps: int,
                    guidance_scale: float = 1.0) -> torch.Tensor:
    """Heun PF-ODE sampling on the Karras grid with ``steps`` steps (2·steps − 1 evaluations)."""
    sigmas = schedule.append_zero(schedule.karras_sigmas(steps, device=x_T.device))
    with torch.no_grad():
        return sample_ode(teacher_denoiser(net, guidance_scale), x_T, sigmas, "heun", labels=labels)


def ctm_samples(net: ImageUNet, x_T: torch.Tensor, labels: torch.Tensor, steps: int, gamma: float,
                seed: int = 0) -> torch.Tensor:
    """CTM γ-sampling with ``steps`` jumps of the student along the Karras grid σ_max → σ_min."""
    sigmas = schedule.karras_sigmas(steps + 1, device=x_T.device)
    with torch.no_grad():
        return sample_ctm(student_jump(net), x_T, sigmas, gamma, generator=torch.Generator().manual_seed(seed),
                          labels=labels)


def initial_noise(n: int, config: ImageUNetConfig, seed: int) -> torch.Tensor:
    """x_T = σ_max·z, ``[n, C, S, S]``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, config.channels, config.size, config.size, generator=g) * schedule.SIGMA_MAX


# ---------------------------------------------------------------- runs

def digits_dataset(cfg: ImageRecipeConfig) -> TensorDataset:
    """The training split as ``(x [1, S, S], label)`` items; the held-out part is never seen in training."""
    split = load_digit_split(cfg.data)
    return TensorDataset(split.train_x, split.train_y)


def build_models(cfg: ImageRecipeConfig) -> tuple[dict, object]:
    """``({name: module}, loss_fn)`` of the mode; the CTM student starts as a copy of the teacher."""
    if cfg.mode == "teacher":
        return {"net": ImageUNet(cfg.model)}, make_teacher_loss(cfg)
    teacher = ImageUNet.from_pretrained(cfg.ctm.teacher)
    if teacher.config.two_time:
        raise ValueError(f"ctm.teacher {cfg.ctm.teacher} holds a two-time (student) net, not a teacher")
    models = {"student": ImageUNet.two_time_from(teacher), "teacher": teacher}
    classifier = None
    if cfg.ctm.distance == "classifier":
        classifier = models["classifier"] = DigitClassifier.from_pretrained(cfg.ctm.classifier)
    return models, make_ctm_loss(cfg, classifier)


def run(cfg: ImageRecipeConfig) -> Path:
    """Train the mode's model through the shared loop and export ``<out_dir>/model``; returns that folder."""
    trained = "net" if cfg.mode == "teacher" else "student"
    with Trainer(cfg.train, run_config=cfg) as trainer:
        models, loss_fn = build_models(cfg)
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.fit(models, loss_fn, digits_dataset(cfg), trainable=[trained])
        seconds = {"train_seconds": time.perf_counter() - start, "train_cpu_seconds": time.process_time() - cpu_start}
        return trainer.export(trainer.out_dir / "model", trained, data={"name": "sklearn-digits", **vars(cfg.data)},
                              metrics=seconds)


def parse_args(argv: list[str]) -> tuple[ImageRecipeConfig, int | None]:
    """The resolved config and ``--threads`` (torch intra-op threads; default: torch's choice)."""
    parser = argparse.ArgumentParser(prog="train_image", description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (e.g. 1 on a shared CPU)")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    return config_from_args(ImageRecipeConfig, args), args.threads


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, threads = parse_args(sys.argv[1:] if argv is None else argv)
        check_run_dir(cfg.train)
    except (ConfigError, ValueError) as err:
        print(f"train_image: {err}", file=sys.stderr)
        return 2
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        run(cfg)
    except FileNotFoundError as err:
        print(f"train_image: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
