"""A small net's model folder: ``config.json`` (its dataclass config) + ``model.safetensors`` (its state dict).

The one save/load of the project's dataclass-configured nets (``ImageUNet``, ``DigitClassifier``,
``SynthCapsClassifier``); ``provenance.json`` beside them is written by ``soundctm.train.export``.

    save_model_dir(net, "runs/x/model")                                   # net.config is a dataclass
    net = load_model_dir("runs/x/model", lambda d: Net(NetConfig(**d)))   # strict: every key must match
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from safetensors.torch import load_model, save_model
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

M = TypeVar("M", bound=nn.Module)


class NotAModelDir(FileNotFoundError, ValueError):
    """A path without ``config.json`` and ``model.safetensors``: an OSError to file code, a ValueError to CLIs."""


def save_model_dir(module: nn.Module, directory: str | Path) -> Path:
    """Write ``module.config`` (a dataclass) as ``config.json`` and the module's state as ``model.safetensors``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(module.config), indent=2) + "\n")
    save_model(module, str(directory / WEIGHTS_FILE))
    return directory


def load_model_dir(directory: str | Path, build: Callable[[dict], M]) -> M:
    """``build(config dict)``, then its weights from ``model.safetensors`` (strict); the module is returned as built."""
    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
        raise NotAModelDir(f"{directory} is not a model directory (it must hold {CONFIG_FILE} and {WEIGHTS_FILE})")
    module = build(json.loads((directory / CONFIG_FILE).read_text()))
    load_model(module, str(directory / WEIGHTS_FILE), strict=True)
    return module
