"""Toy regression recipe: the smallest complete use of the shared training loop (`soundctm.train`).

An MLP with dropout learns y = sin(2 x·a) + ε from a fixed random dataset. The loss also reads the EMA model
every step (as the CTM recipe reads its stop-gradient target θ⁻). After training each process writes
``digest-rank<r>.json`` (SHA-256 of its weights, EMAs and optimizer state) so runs can be compared bit for bit,
and the main process exports the EMA model to ``<out_dir>/model``.

    python recipes/train_toy_regression.py --config recipes/configs/toy_regression.yaml --set train.steps=100
    accelerate launch --multi_gpu --num_processes 2 --main_process_port 29533 \\
        recipes/train_toy_regression.py --config recipes/configs/toy_regression.yaml --set train.cpu=true
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from soundctm.config import ConfigError, add_config_args, config_from_args
from soundctm.core.utils import randn
from soundctm.train import TrainConfig, Trainer, ema_key
from soundctm.train.export import state_digest


@dataclass(frozen=True)
class ModelConfig:
    in_dim: int = 8
    hidden: int = 64
    depth: int = 2
    dropout: float = 0.1


@dataclass(frozen=True)
class DataConfig:
    num_items: int = 1000
    noise: float = 0.05
    seed: int = 1234
    jitter: float = 0.01  # std of the input noise drawn from the loss rng every step


@dataclass(frozen=True)
class ToyRegressionConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir=Path("runs/toy_regression")))
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)


class MLP(nn.Module):
    """x [B, in_dim] → y [B, 1]: ``depth`` hidden SiLU layers with dropout."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        dims = [config.in_dim] + [config.hidden] * config.depth
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.SiLU(), nn.Dropout(config.dropout)]
        self.net = nn.Sequential(*layers, nn.Linear(dims[-1], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_dataset(cfg: DataConfig, in_dim: int) -> TensorDataset:
    """x ~ N(0, I) [N, in_dim], y = sin(2 x·a) + noise·ε [N, 1], fixed by ``cfg.seed``."""
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.num_items, in_dim, generator=g)
    a = torch.randn(in_dim, 1, generator=g) / in_dim**0.5
    y = torch.sin(2 * x @ a) + cfg.noise * torch.randn(cfg.num_items, 1, generator=g)
    return TensorDataset(x, y)


def make_loss_fn(ema_decay: float | None, jitter: float = 0.01):
    """MSE of the net on inputs jittered with ``rng``; logs the MSE of the EMA ``ema_decay`` too."""

    def loss_fn(batch, models, step, rng):
        x, y = batch
        x = x + jitter * randn(x.shape, rng, x.device)
        loss = F.mse_loss(models["net"](x), y)
        logs = {}
        if ema_decay is not None:
            with torch.no_grad():
                logs["train/ema_mse"] = F.mse_loss(models[ema_key("net", ema_decay)](x), y)
        return loss, logs

    return loss_fn


def write_digest(trainer: Trainer, path: Path) -> dict[str, str]:
    """SHA-256 of this process's net weights, EMA weights and optimizer state, written as JSON."""
    digest = {
        "step": trainer.step,
        "net": state_digest(trainer.unwrapped("net").state_dict()),
        "ema": state_digest(trainer.ema.state_dict()),
        "optimizer": state_digest(trainer.optimizer.state_dict()),
    }
    path.write_text(json.dumps(digest, indent=2) + "\n")
    return digest


def parse_config(argv: list[str]) -> ToyRegressionConfig:
    parser = argparse.ArgumentParser(prog="train_toy_regression", description=__doc__.splitlines()[0])
    add_config_args(parser)
    return config_from_args(ToyRegressionConfig, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_config(sys.argv[1:] if argv is None else argv)
    except (ConfigError, ValueError) as err:
        print(f"train_toy_regression: {err}", file=sys.stderr)
        return 2
    with Trainer(cfg.train, run_config=cfg) as trainer:
        models = {"net": MLP(cfg.model)}
        data = make_dataset(cfg.data, cfg.model.in_dim)
        ema_decay = cfg.train.ema_decays[0] if cfg.train.ema_decays else None
        trainer.fit(models, make_loss_fn(ema_decay, cfg.data.jitter), data)
        write_digest(trainer, trainer.out_dir / f"digest-rank{trainer.rank}.json")
        trainer.export(trainer.out_dir / "model", "net", config=cfg.model,
                       data={"name": "toy_regression", **vars(cfg.data)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
