"""Training checkpoints: step-numbered folders written atomically, retention, and resume resolution.

Layout under ``<out_dir>/checkpoints/``::

    ckpt-000100/            a complete checkpoint (what ``accelerator.save_state`` writes: model*.safetensors,
                            optimizer.bin, random_states_*.pkl, ...) + ema.safetensors + trainer_state.json
    ckpt-000200.tmp/        a save in progress, or the debris of a crash: ignored, deleted on the next start

A save goes to ``ckpt-XXXXXX.tmp``; ``trainer_state.json`` is written last, every file and the folder are
fsync'ed, then ``os.replace`` gives the folder its final name. A crash at any moment therefore leaves the
previous checkpoint untouched and loadable. Old checkpoints are renamed to ``*.tmp`` before deletion, so a crash
while pruning leaves only debris that the next start removes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

PREFIX = "ckpt-"
TMP_SUFFIX = ".tmp"
STATE_FILE = "trainer_state.json"
EMA_FILE = "ema.safetensors"
_NAME = re.compile(rf"{PREFIX}(\d+)")


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint after ``step`` optimizer steps, e.g. ``ckpt-000100``."""
    return f"{PREFIX}{step:06d}"


def checkpoint_step(path: str | Path) -> int | None:
    """The step encoded in a checkpoint folder name, None for anything else (``.tmp`` folders included)."""
    match = _NAME.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None


def is_complete(path: str | Path) -> bool:
    """A checkpoint folder is complete when it has its final name and its ``trainer_state.json``."""
    return checkpoint_step(path) is not None and (Path(path) / STATE_FILE).is_file()


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and is_complete(p)), key=checkpoint_step)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def remove_stale(root: str | Path) -> list[Path]:
    """Delete ``*.tmp`` folders (interrupted saves/prunes) under ``root``; returns what was removed."""
    root = Path(root)
    stale = [p for p in root.iterdir() if p.name.endswith(TMP_SUFFIX)] if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def resolve_resume(root: str | Path, resume: str | Path | None) -> Path | None:
    """``None`` → None; ``"latest"`` → newest complete checkpoint under ``root`` (None if there is none);
    a path → that checkpoint, which must be complete."""
    if resume is None:
        return None
    if str(resume) == "latest":
        return latest_checkpoint(root)
    path = Path(resume)
    if not is_complete(path):
        raise ValueError(f"resume={str(resume)!r} is not a complete checkpoint folder "
                         f"(expected {PREFIX}NNNNNN/ with {STATE_FILE})")
    return path


def fsync_tree(path: Path) -> None:
    """fsync every file below ``path`` and then every folder, deepest first."""
    for dirpath, _, filenames in os.walk(path, topdown=False):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    """fsync a folder so a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_folder(tmp: Path, final: Path) -> Path:
    """fsync ``tmp`` and atomically rename it to ``final`` (which must not exist)."""
    fsync_tree(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    return final


def prune(root: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints (``keep_last=0`` keeps all)."""
    old = list_checkpoints(root)[:-keep_last] if keep_last > 0 else []
    for path in old:
        doomed = path.with_name(path.name + TMP_SUFFIX)
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    return old


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def save_checkpoint(accelerator, root: Path, step: int, ema_state: dict[str, torch.Tensor],
                    trainer_state: dict[str, Any], keep_last: int = 0,
                    before_commit: Callable[[Path], None] | None = None) -> Path:
    """Atomically write checkpoint ``step`` under ``root`` (call on every process); returns its folder."""
    final = Path(root) / checkpoint_name(step)
    tmp = final.with_name(final.name + TMP_SUFFIX)
    if accelerator.is_main_process:
        if final.exists():
            raise FileExistsError(f"checkpoint {final} already exists")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_file({k: v.detach().contiguous().cpu() for k, v in ema_state.items()}, tmp / EMA_FILE)
        if before_commit is not None:
            before_commit(tmp)
        write_json(tmp / STATE_FILE, trainer_state)  # written last: marks the folder complete
        commit_folder(tmp, final)
        prune(root, keep_last)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore models/optimizer/scaler through ``accelerator.load_state``; return (trainer_state, ema_state)."""
    path = Path(path)
    accelerator.load_state(str(path))
    state = json.loads((path / STATE_FILE).read_text())
    ema_file = path / EMA_FILE
    ema_state = load_file(ema_file, device=str(accelerator.device)) if ema_file.is_file() else {}
    return state, ema_state
