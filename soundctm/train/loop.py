"""The shared training loop on ``accelerate``: every recipe (teacher, CTM student, VAE, digits) runs through it.

A recipe supplies only

- ``models``: ``{name: nn.Module}``; the names in ``trainable`` are optimised, the others are frozen;
- ``data``: a map-style dataset or a resumable stream ``data(start_micro_step, rank, world_size) -> iterator``
  (see `soundctm.train.data`);
- ``loss_fn(batch, models, step, rng) -> (loss, logs)``: a scalar loss (per-sample losses reduced by the
  recipe) and a dict of scalars to log; ``models`` also holds every EMA as ``"<name>_ema<decay>"``
  (`soundctm.train.ema.ema_key`); ``rng`` is a ``torch.Generator`` on the device, seeded per micro-step;
- optionally ``sample_fn(models, step, logger)``, called every ``sample_every`` steps on the main process.

Adversarial training (e.g. a CTM student + discriminator) uses optimizer groups: ``trainable={"student":
["student"], "disc": ["disc"]}`` and ``loss_fn={"student": g_loss, "disc": d_loss}``. Each step runs the groups
in order on the same micro-batches; each group backpropagates its own loss, clips and steps its own optimizer,
then all gradients are cleared, so gradients a loss leaks into another group's weights are discarded.

The loop owns, in this order: seeding, the Accelerator, optimizer with warm-up, the step (grad accumulation,
clipping, optimizer, EMA), logging with throughput, samples, atomic checkpoints with exact resume, export.

Exact resume: the batch of micro-step k depends only on (seed, k), and every global RNG is reseeded from
(seed, k, rank) before the micro-step, so N steps in one go and N/2 + resume + N/2 give identical bits.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.state import AcceleratorState, GradientState
from torch import nn
from tqdm.auto import tqdm

from soundctm.config import dump_yaml, to_dict
from soundctm.train.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    remove_stale,
    resolve_resume,
    save_checkpoint,
)
from soundctm.train.data import batch_stream, to_device
from soundctm.train.ema import EMA, ema_key
from soundctm.train.export import build_provenance, export_model, state_digest
from soundctm.train.logging import RunLogger, ThroughputMeter
from soundctm.train.optim import LR_DECAYS, OPTIMIZERS, build_optimizer, scheduled_lr, set_lr
from soundctm.train.seeding import seed_everything, seed_micro_step

LossFn = Callable[[Any, dict[str, nn.Module], int, torch.Generator], tuple[torch.Tensor, dict[str, Any]]]
SampleFn = Callable[[dict[str, nn.Module], int, RunLogger], None]
MAIN_GROUP = "main"  # the optimizer group of a plain (non-adversarial) run


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of the shared loop. ``batch_size`` is the global micro-batch (all processes together)."""

    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # global batch per micro-step; per process: batch_size / num_processes
    grad_accum: int = 1  # micro-steps per optimizer step
    lr: float = 1e-4
    warmup_steps: int = 0  # linear warm-up, then constant ...
    lr_decay: Literal["none", "linear", "cosine"] = "none"  # ... until decay_start, then down to lr_min at `steps`
    decay_start: int = 0
    lr_min: float = 0.0
    optimizer: Literal["adamw", "radam"] = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0  # on weights with ndim >= 2 only
    # learning-rate multipliers by parameter-name prefix "<model>.<parameter path>" (e.g. a zero-initialised
    # layer added to a pretrained network: {"net.unet.time_embedding.cond_proj": 20.0})
    lr_scales: dict[str, float] = field(default_factory=dict)
    grad_clip: float | None = 1.0  # max global grad norm; None = no clipping (the norm is still logged)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    ema_decays: tuple[float, ...] = (0.999,)  # one EMA copy per decay of each EMA model (fit: ema_models)
    # decay min(β, (1 + n)/(10 + n)) at optimizer step n: a model trained from random init forgets its init
    # (plain EMA 0.999 still holds 0.999^1800 ≈ 17 % of it after 1800 steps); keep off when starting from a
    # trained model (the CTM student, whose θ⁻ starts at the teacher)
    ema_warmup: bool = False
    ckpt_every: int = 1000  # a checkpoint every N steps, and one at the end
    keep_last: int = 3  # complete checkpoints kept; 0 keeps all
    log_every: int = 50
    sample_every: int = 0  # 0: never call sample_fn
    seed: int = 0
    out_dir: Path = Path("runs/default")
    resume: str | None = None  # None, "latest" or a checkpoint folder
    num_workers: int = 0  # DataLoader workers for map-style datasets
    cpu: bool = False  # force CPU even when CUDA is available
    find_unused_parameters: bool = False  # DDP option for models with unused branches
    tensorboard: bool = True
    progress: bool = True  # tqdm bar on the main process
    # a step whose loss or gradient norm is not finite is skipped (no optimizer step, no EMA update; counted and
    # logged as train/skipped_steps); this many such steps in a row stop the run (nothing non-finite is saved)
    max_nonfinite_steps: int = 10

    def __post_init__(self):
        _check_positive(self, "steps", "batch_size", "grad_accum", "ckpt_every", "log_every", "max_nonfinite_steps")
        _check_non_negative(self, "warmup_steps", "keep_last", "sample_every", "num_workers", "weight_decay")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        if not all(0.0 <= d < 1.0 for d in self.ema_decays):
            raise ValueError(f"ema_decays must lie in [0, 1), got {self.ema_decays}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {LR_DECAYS}, got {self.lr_decay!r}")
        if not 0.0 <= self.lr_min <= self.lr:
            raise ValueError(f"lr_min must lie in [0, lr={self.lr}], got {self.lr_min}")
        if self.lr_decay != "none" and not 0 <= self.decay_start < self.steps:
            raise ValueError(f"decay_start must lie in [0, steps={self.steps}), got {self.decay_start}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}")


def _check_positive(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")


def _check_non_negative(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")


def check_run_dir(cfg: TrainConfig) -> Path | None:
    """The checkpoint ``cfg.resume`` names (None for a fresh run); ValueError when ``out_dir`` already holds
    checkpoints and ``resume`` is not set, or ``resume`` names no complete checkpoint. Recipes call it with their
    argument checks, before any work, so that a rerun into a used folder is a one-line error."""
    ckpt_dir = Path(cfg.out_dir) / "checkpoints"
    path = resolve_resume(ckpt_dir, cfg.resume)
    if cfg.resume is None and list_checkpoints(ckpt_dir):
        raise ValueError(f"out_dir {cfg.out_dir} already holds checkpoints; set train.resume=latest to continue "
                         f"or choose a new train.out_dir")
    return path


@dataclass
class FitResult:
    """Where `Trainer.fit` ended."""

    step: int
    logs: dict[str, float]  # the last logged scalars
    checkpoint: Path | None  # the last checkpoint written or resumed from
    resumed_from: Path | None


@dataclass
class LogWindow:
    """Running sums of logged scalars between two log steps (kept on the device: no sync per step)."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: int = 0

    def add(self, values: dict[str, Any], weight: float) -> None:
        for name, value in values.items():
            value = torch.as_tensor(value).detach().float().reshape(())
            self.sums[name] = self.sums.get(name, 0.0) + value * weight

    def mean_over_processes(self, accelerator: Accelerator) -> dict[str, float]:
        """Mean of each scalar over the window's steps and over all processes; resets the window."""
        names = sorted(self.sums)
        if not names:
            return {}
        stacked = torch.stack([self.sums[n].to(accelerator.device) for n in names]) / max(self.steps, 1)
        values = accelerator.reduce(stacked, reduction="mean").tolist()
        self.sums, self.steps = {}, 0
        return dict(zip(names, values))


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """``Accelerator`` on CUDA when available (else CPU), with the config's mixed precision."""
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)
    return Accelerator(cpu=cfg.cpu or not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision,
                       kwargs_handlers=[ddp])


def optimizer_groups(models: dict[str, nn.Module], trainable: list[str] | dict[str, list[str]] | None,
                     loss_fn: LossFn | dict[str, LossFn]) -> tuple[dict[str, list[str]], dict[str, LossFn]]:
    """Normalise ``trainable``/``loss_fn`` into ``{group: model names}`` and ``{group: loss_fn}``."""
    if isinstance(trainable, dict):
        groups = {g: list(names) for g, names in trainable.items()}
    else:
        groups = {MAIN_GROUP: list(models) if trainable is None else list(trainable)}
    names = [n for group in groups.values() for n in group]
    if not names or any(not g for g in groups.values()) or len(set(names)) != len(names) \
            or not set(names) <= set(models):
        raise ValueError(f"trainable must name models among {sorted(models)}, each in one non-empty group; "
                         f"got {trainable}")
    loss_fns = loss_fn if isinstance(loss_fn, dict) else dict.fromkeys(groups, loss_fn)
    if set(loss_fns) != set(groups) or (len(groups) > 1 and not isinstance(loss_fn, dict)):
        raise ValueError(f"loss_fn must be one callable for one group or a dict with keys {sorted(groups)}")
    return groups, {g: loss_fns[g] for g in groups}


class Trainer:
    """One training run: ``Trainer(cfg)`` seeds and sets up accelerate, then build models, then `fit`.

    Example::

        with Trainer(cfg.train, run_config=cfg) as trainer:
            models = {"net": MLP(cfg.model)}          # built after seeding: same init on every process
            trainer.fit(models, loss_fn, dataset)
            trainer.export(cfg.train.out_dir / "model", "net", config=cfg.model)
    """

    def __init__(self, cfg: TrainConfig, run_config: Any = None):
        self.cfg = cfg
        self.run_config = cfg if run_config is None else run_config
        seed_everything(cfg.seed)
        self.accelerator = make_accelerator(cfg)
        self.out_dir = Path(cfg.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.logger = RunLogger(self.out_dir / "logs", enabled=self.is_main, tensorboard=cfg.tensorboard)
        self.models: dict[str, nn.Module] = {}  # trainable (wrapped for DDP) + frozen + EMA copies
        self._unwrapped: dict[str, nn.Module] = {}
        self.groups: dict[str, list[str]] = {}  # optimizer group -> model names
        self.loss_fns: dict[str, LossFn] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self._group_params: dict[str, list[nn.Parameter]] = {}
        self.ema_sources: list[str] = []
        self.trainable: list[str] = []
        self.ema: EMA | None = None
        self.step = 0  # optimizer steps done
        self.micro_step = 0  # micro-batches consumed (drives data order and RNG)
        self.last_checkpoint: Path | None = None
        self.skipped_steps = 0  # non-finite steps skipped in the whole run (kept across resumes)
        self.nonfinite_in_row = 0

    # ------------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def num_processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of a single-group run."""
        if len(self.optimizers) != 1:
            raise ValueError(f"several optimizer groups {list(self.optimizers)}: use trainer.optimizers[group]")
        return next(iter(self.optimizers.values()))

    def unwrapped(self, name: str) -> nn.Module:
        """Model ``name`` without its DDP/compile wrapper."""
        if name not in self._unwrapped:
            self._unwrapped[name] = self.accelerator.unwrap_model(self.models[name])
        return self._unwrapped[name]

    # ------------------------------------------------------------------ the loop

    def fit(self, models: dict[str, nn.Module], loss_fn: LossFn | dict[str, LossFn], data: Any,
            trainable: list[str] | dict[str, list[str]] | None = None, ema_models: list[str] | None = None,
            sample_fn: SampleFn | None = None, collate_fn: Callable | None = None,
            before_commit: Callable[[Path], None] | None = None) -> FitResult:
        """Train until ``cfg.steps`` optimizer steps (resuming first if ``cfg.resume``); see module docstring.

        ``trainable``: names of the models to optimise (default: all), or ``{group: names}`` for one optimizer
        per group with ``loss_fn`` a ``{group: loss_fn}`` dict. ``ema_models``: trained models that get EMAs
        (default: all). ``before_commit(tmp_dir)`` runs inside every checkpoint save just before it is
        committed (a test hook).
        """
        cfg = self.cfg
        self.setup_models(models, trainable, loss_fn, ema_models)
        resumed_from = self.resume()
        self.write_run_config()
        batches = batch_stream(data, cfg.batch_size, cfg.seed, self.micro_step, self.rank, self.num_processes,
                               cfg.num_workers, collate_fn, pin_memory=self.device.type == "cuda")
        meter, window, logs = ThroughputMeter(), LogWindow(), {}
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (self.is_main and cfg.progress), desc="train")
        while self.step < cfg.steps:
            lr = scheduled_lr(self.step, cfg.lr, cfg.warmup_steps, cfg.lr_decay, cfg.decay_start, cfg.steps,
                              cfg.lr_min)
            micro_batches = [self.next_batch(batches, meter) for _ in range(cfg.grad_accum)]
            stepped = {group: self.optimize_group(group, phase, micro_batches, lr, window)
                       for phase, group in enumerate(self.groups)}
            grad_norms = {group: norm for group, (norm, _) in stepped.items()}
            self.micro_step += cfg.grad_accum
            if any(ok for _, ok in stepped.values()):
                self.ema.update({n: self.unwrapped(n) for n in self.ema_sources},
                                step=self.step if cfg.ema_warmup else None)
            self.count_nonfinite(not all(ok for _, ok in stepped.values()))
            self.step += 1
            window.steps += 1
            meter.add_step(cfg.batch_size * cfg.grad_accum)
            bar.update(1)

            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                logs = self.log_scalars(window, meter, lr, grad_norms, bar)
            if sample_fn is not None and cfg.sample_every and self.step % cfg.sample_every == 0:
                with meter.excluded():
                    self.run_sample_fn(sample_fn)
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                with meter.excluded():
                    self.save_checkpoint(before_commit)
        bar.close()
        self.logger.flush()
        self.accelerator.wait_for_everyone()
        return FitResult(self.step, logs, self.last_checkpoint, resumed_from)

    # ------------------------------------------------------------------ pieces of the loop, in order

    def setup_models(self, models: dict[str, nn.Module], trainable: list[str] | dict[str, list[str]] | None,
                     loss_fn: LossFn | dict[str, LossFn], ema_models: list[str] | None = None) -> None:
        """Freeze the frozen models, build one optimizer per group, wrap the trainable ones, create the EMAs."""
        cfg, acc = self.cfg, self.accelerator
        self.groups, self.loss_fns = optimizer_groups(models, trainable, loss_fn)
        self.trainable = [n for names in self.groups.values() for n in names]
        self.ema_sources = self.trainable if ema_models is None else list(ema_models)
        if not set(self.ema_sources) <= set(self.trainable):
            raise ValueError(f"ema_models must be trained models among {self.trainable}, got {self.ema_sources}")
        frozen = {n: m for n, m in models.items() if n not in self.trainable}
        for module in frozen.values():
            module.requires_grad_(False).eval().to(self.device)
        train_modules = [models[n].train() for n in self.trainable]
        # EMA copies are taken before accelerate patches forward (so they autocast like any frozen model)
        self.ema = EMA({n: models[n] for n in self.ema_sources}, cfg.ema_decays)
        optimizers = [build_optimizer({n: models[n] for n in names}, cfg.optimizer, cfg.lr, cfg.betas, cfg.eps,
                                      cfg.weight_decay, self._scales_for(names)) for names in self.groups.values()]
        unused = set(cfg.lr_scales) - {k for names in self.groups.values() for k in self._scales_for(names)}
        if unused:
            raise ValueError(f"lr_scales keys {sorted(unused)} name no trained model among {self.trainable}")
        prepared = acc.prepare(*train_modules, *optimizers)
        wrapped = dict(zip(self.trainable, prepared[:len(train_modules)]))
        self.optimizers = dict(zip(self.groups, prepared[len(train_modules):]))
        self.models = {**frozen, **wrapped}
        self._unwrapped = {}
        self._group_params = {g: [p for n in names for p in wrapped[n].parameters() if p.requires_grad]
                              for g, names in self.groups.items()}
        self.ema.to(self.device)
        self.ema.reset({n: self.unwrapped(n) for n in self.ema_sources})  # from the (DDP-broadcast) weights
        self.models.update(self.ema.modules())

    def _scales_for(self, names: list[str]) -> dict[str, float]:
        """The ``lr_scales`` entries whose model (the prefix's first part) is among ``names``."""
        return {k: v for k, v in self.cfg.lr_scales.items() if k.split(".", 1)[0] in names}

    def resume(self) -> Path | None:
        """Clean stale ``*.tmp`` folders, then load ``cfg.resume`` (if any): weights, optimizer, EMA, step."""
        cfg = self.cfg
        if self.is_main:
            remove_stale(self.ckpt_dir)
        self.accelerator.wait_for_everyone()
        path = check_run_dir(cfg)
        if path is None:
            return None
        state, ema_state = load_checkpoint(self.accelerator, path)
        self.ema.load_state_dict(ema_state)
        self.step, self.micro_step = int(state["step"]), int(state["micro_step"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        if state.get("batch_size") != cfg.batch_size and self.is_main:
            warnings.warn(f"resuming with batch_size={cfg.batch_size} from a checkpoint trained with "
                          f"{state.get('batch_size')}: data order is no longer that of an uninterrupted run",
                          stacklevel=2)
        self.last_checkpoint = path
        return path

    def write_run_config(self) -> None:
        """Write the resolved run config to ``<out_dir>/config.yaml`` (main process)."""
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(dump_yaml(self.run_config))

    def next_batch(self, batches: Iterator[Any], meter: ThroughputMeter) -> Any:
        """The next batch on the device; the wait is charged to ``meter`` as data time."""
        start = time.perf_counter()
        batch = to_device(next(batches), self.device)
        meter.add_data_wait(time.perf_counter() - start)
        return batch

    def optimize_group(self, group: str, phase: int, micro_batches: list[Any], lr: float,
                       window: LogWindow) -> tuple[torch.Tensor, bool]:
        """One optimizer step of ``group``: accumulate its loss gradients over the micro-batches, clip, step,
        clear all gradients. A non-finite loss or gradient norm (on any process) skips the step and its logs.
        Returns the gradient norm before clipping and whether the step was taken."""
        cfg, acc, optimizer = self.cfg, self.accelerator, self.optimizers[group]
        set_lr(optimizer, lr)
        accum, logged = len(micro_batches), []
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        for micro, batch in enumerate(micro_batches):
            rng = seed_micro_step(cfg.seed, self.micro_step + micro, self.rank, self.device, phase)
            with self.grad_sync(micro == accum - 1):
                with acc.autocast():
                    loss, logs = self.loss_fns[group](batch, self.models, self.step, rng)
                acc.backward(loss / accum)
            finite &= torch.isfinite(loss.detach()).all()
            logged.append({self.group_key("train/loss", group): loss, **logs})
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf
        grad_norm = acc.clip_grad_norm_(self._group_params[group], max_norm)
        if cfg.mixed_precision != "fp16":  # with fp16 the grad scaler skips inf gradients itself
            finite &= torch.isfinite(torch.as_tensor(grad_norm, device=self.device))
        ok = self.all_processes_agree(finite)
        if ok:
            optimizer.step()
            for logs in logged:
                window.add(logs, 1.0 / accum)
        for opt in self.optimizers.values():  # also drops gradients this loss leaked into other groups
            opt.zero_grad(set_to_none=True)
        return grad_norm, ok

    def all_processes_agree(self, finite: torch.Tensor) -> bool:
        """True when ``finite`` holds on every process (one small all-reduce with several processes)."""
        if self.num_processes > 1:
            return bool(self.accelerator.reduce((~finite).float(), reduction="sum") == 0)
        return bool(finite)

    def count_nonfinite(self, skipped: bool) -> None:
        """Count a skipped step; stop after ``max_nonfinite_steps`` of them in a row."""
        if not skipped:
            self.nonfinite_in_row = 0
            return
        self.skipped_steps += 1
        self.nonfinite_in_row += 1
        if self.is_main:
            warnings.warn(f"step {self.step + 1}: non-finite loss or gradients, step skipped", stacklevel=2)
        if self.nonfinite_in_row >= self.cfg.max_nonfinite_steps:
            raise FloatingPointError(f"{self.nonfinite_in_row} non-finite steps in a row, the last at step "
                                     f"{self.step + 1} (train.max_nonfinite_steps = {self.cfg.max_nonfinite_steps})")

    def group_key(self, name: str, group: str) -> str:
        """``name`` for a single-group run, ``name/<group>`` with several optimizer groups."""
        return name if len(self.groups) == 1 else f"{name}/{group}"

    def grad_sync(self, sync: bool) -> contextlib.AbstractContextManager:
        """No DDP all-reduce on micro-steps that only accumulate (``sync=False``)."""
        stack = contextlib.ExitStack()
        if not sync:
            for name in self.trainable:
                stack.enter_context(self.accelerator.no_sync(self.models[name]))
        return stack

    def log_scalars(self, window: LogWindow, meter: ThroughputMeter, lr: float,
                    grad_norms: dict[str, torch.Tensor], bar: tqdm) -> dict[str, float]:
        """Reduce the window over processes (the steps taken), add lr/grad-norm/throughput and the count of skipped
        non-finite steps, write them."""
        values = window.mean_over_processes(self.accelerator)
        values["train/lr"] = lr
        values.update({self.group_key("train/grad_norm", g): float(n) for g, n in grad_norms.items()})
        values.update(meter.report())
        if self.skipped_steps:
            values["train/skipped_steps"] = self.skipped_steps
        losses = {g: values.get(self.group_key("train/loss", g), math.nan) for g in self.groups}
        self.logger.scalars(self.step, values)
        shown = {self.group_key("loss", g): f"{v:.4g}" for g, v in losses.items()}
        bar.set_postfix(shown, data=f"{values['perf/data_wait_frac']:.1%}")
        return values

    def run_sample_fn(self, sample_fn: SampleFn) -> None:
        """Call ``sample_fn(models, step, logger)`` on the main process, in eval mode, without gradients."""
        if not self.is_main:
            return
        plain = {n: self.unwrapped(n) if n in self.trainable else m for n, m in self.models.items()}
        for name in self.trainable:
            plain[name].eval()
        with torch.no_grad():
            sample_fn(plain, self.step, self.logger)
        for name in self.trainable:
            plain[name].train()

    def save_checkpoint(self, before_commit: Callable[[Path], None] | None = None) -> Path:
        """Atomically write ``checkpoints/ckpt-<step>/`` (all processes must call this); refuses weights or EMA
        holding non-finite values (the previous checkpoint stays the latest)."""
        self.check_finite({**{n: self.unwrapped(n) for n in self.trainable}, **self.ema.modules()}, "a checkpoint")
        state = {
            "step": self.step,
            "micro_step": self.micro_step,
            "skipped_steps": self.skipped_steps,
            "batch_size": self.cfg.batch_size,
            "num_processes": self.num_processes,
            "train_config": to_dict(self.cfg),
            "run_config": to_dict(self.run_config),
        }
        self.last_checkpoint = save_checkpoint(self.accelerator, self.ckpt_dir, self.step, self.ema.state_dict(),
                                               state, self.cfg.keep_last, before_commit)
        return self.last_checkpoint

    def check_finite(self, modules: dict[str, nn.Module], what: str) -> None:
        """Raise FloatingPointError naming the first tensor of ``modules`` that holds a NaN or inf."""
        for name, module in modules.items():
            for key, value in module.state_dict().items():
                if value.is_floating_point() and not torch.isfinite(value).all():
                    raise FloatingPointError(f"not writing {what} at step {self.step}: {name}.{key} holds "
                                             f"non-finite values")

    # ------------------------------------------------------------------ after training

    def export(self, out_dir: str | Path, name: str | None = None, ema: bool | float = True, config: Any = None,
               data: Any = None, metrics: dict[str, float] | None = None) -> Path:
        """Write an inference folder for model ``name``: config.json + model.safetensors + provenance.json.

        ``ema=True`` exports the EMA with the first of ``cfg.ema_decays`` (raw weights if there is none),
        a float picks that decay, ``False`` the raw weights. ``config`` defaults to ``model.config``.
        """
        name = self.default_model_name() if name is None else name
        module, weights = self.export_weights(name, ema)
        self.check_finite({name: module}, "an export")
        provenance = build_provenance(self.run_config, data, {**self.logger.last, **(metrics or {})})
        provenance.update({"model": name, "weights": weights, "step": self.step,
                           "weights_sha256": state_digest(module.state_dict())})
        if self.is_main:
            export_model(module, out_dir, config, provenance)
        self.accelerator.wait_for_everyone()
        return Path(out_dir)

    def default_model_name(self) -> str:
        if len(self.trainable) != 1:
            raise ValueError(f"name must be one of {self.trainable} when several models are trained")
        return self.trainable[0]

    def export_weights(self, name: str, ema: bool | float) -> tuple[nn.Module, str]:
        """The module to export and a label (``"ema0.999"`` or ``"raw"``)."""
        if name not in self.trainable:
            raise ValueError(f"name must be a trained model, one of {self.trainable}; got {name!r}")
        decay = (self.cfg.ema_decays[0] if self.cfg.ema_decays else None) if ema is True else (ema or None)
        if decay is None:
            return self.unwrapped(name), "raw"
        key = ema_key(name, decay)
        if key not in self.models:
            raise ValueError(f"ema={ema} is not tracked; ema_decays are {self.cfg.ema_decays}")
        return self.models[key], f"ema{decay:g}"

    def close(self) -> None:
        """Close the logger, end the process group and clear accelerate's process-wide state."""
        self.logger.close()
        self.accelerator.end_training()
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
