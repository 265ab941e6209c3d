"""Export an inference model folder: ``config.json`` + ``model.safetensors`` + ``provenance.json``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from soundctm.config import to_dict

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PROVENANCE_FILE = "provenance.json"


def git_commit(cwd: str | Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the repository containing ``cwd`` (default: this package), None without git."""
    cwd = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of all tensors in a (nested) state dict."""
    h = hashlib.sha256()
    for key, tensor in _flat_tensors(state, ""):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _flat_tensors(obj: Any, prefix: str) -> list[tuple[str, torch.Tensor]]:
    """``[(dotted key, tensor)]`` of a nested dict/list state, sorted by key (non-tensors are skipped)."""
    if isinstance(obj, torch.Tensor):
        return [(prefix, obj.reshape(-1) if obj.ndim == 0 else obj)]
    if isinstance(obj, dict):
        items = [(f"{prefix}.{k}" if prefix else str(k), v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        items = [(f"{prefix}.{i}", v) for i, v in enumerate(obj)]
    else:
        return []
    return sorted((kv for key, value in items for kv in _flat_tensors(value, key)), key=lambda kv: kv[0])


def software_versions() -> dict[str, str]:
    """Versions of Python, torch and accelerate used for the run."""
    import accelerate

    return {"python": platform.python_version(), "torch": torch.__version__, "accelerate": accelerate.__version__}


def build_provenance(config: Any = None, data: Any = None, metrics: dict[str, float] | None = None,
                     argv: list[str] | None = None) -> dict[str, Any]:
    """What produced a model: command line, resolved config, git commit, data description, metrics, versions."""
    argv = sys.argv if argv is None else argv
    return {
        "command": shlex.join(argv),
        "config": to_dict(config),
        "git_commit": git_commit(),
        "data": to_dict(data),
        "metrics": dict(metrics or {}),
        "versions": software_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def model_config_dict(model: nn.Module, config: Any = None) -> dict[str, Any]:
    """The config to write: ``config`` if given, else ``model.config`` (dataclass or dict), else ``{}``."""
    config = getattr(model, "config", None) if config is None else config
    if config is None:
        return {}
    if dataclasses.is_dataclass(config) or isinstance(config, dict):
        return to_dict(config)
    if hasattr(config, "to_dict"):  # diffusers/transformers configs
        return dict(config.to_dict())
    raise ValueError(f"config must be a dataclass or dict, got {type(config).__name__}")


def export_model(model: nn.Module, out_dir: str | Path, config: Any = None,
                 provenance: dict[str, Any] | None = None) -> Path:
    """Write ``model`` into ``out_dir``; a model with ``save_pretrained`` writes its own config + weights."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "save_pretrained") and config is None:
        model.save_pretrained(out_dir)
    else:
        (out_dir / CONFIG_FILE).write_text(json.dumps(model_config_dict(model, config), indent=2) + "\n")
        save_model(model, str(out_dir / WEIGHTS_FILE))
    if provenance is not None:
        (out_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    return out_dir


def load_exported_weights(model: nn.Module, model_dir: str | Path) -> nn.Module:
    """Load ``model.safetensors`` of an exported folder into ``model`` (strict) and return it."""
    load_model(model, str(Path(model_dir) / WEIGHTS_FILE), strict=True)
    return model


def read_provenance(model_dir: str | Path) -> dict[str, Any]:
    """The ``provenance.json`` of an exported folder."""
    return json.loads((Path(model_dir) / PROVENANCE_FILE).read_text())
