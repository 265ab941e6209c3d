"""Checkpoint folders: naming, atomic commit, retention, stale .tmp cleanup, SIGKILL during a save."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from recipes import train_toy_regression as toy
from soundctm.train import TrainConfig, Trainer
from soundctm.train.checkpoint import (
    STATE_FILE,
    checkpoint_name,
    checkpoint_step,
    latest_checkpoint,
    list_checkpoints,
    prune,
    remove_stale,
    resolve_resume,
    write_json,
)

ROOT = Path(__file__).resolve().parents[1]

SMALL = toy.ModelConfig(in_dim=4, hidden=8, depth=1, dropout=0.1)


def make_ckpt(root: Path, step: int, complete: bool = True) -> Path:
    path = root / checkpoint_name(step)
    path.mkdir(parents=True)
    if complete:
        write_json(path / STATE_FILE, {"step": step})
    return path


def cfg(out_dir: Path, steps: int, **kw) -> TrainConfig:
    base = dict(batch_size=8, lr=1e-2, ema_decays=(0.9,), ckpt_every=1, keep_last=2, log_every=1, seed=3,
                progress=False, tensorboard=False, cpu=True)
    return TrainConfig(steps=steps, out_dir=out_dir, **{**base, **kw})


def fit(trainer: Trainer, **kw):
    return trainer.fit({"net": toy.MLP(SMALL)}, toy.make_loss_fn(0.9), toy.make_dataset(toy.DataConfig(40), 4),
                       **kw)


def test_names_listing_and_latest(tmp_path):
    assert checkpoint_name(100) == "ckpt-000100" and checkpoint_step("a/ckpt-000100") == 100
    assert checkpoint_step("ckpt-000100.tmp") is None and checkpoint_step("ckpt-1234567") == 1234567
    for step in (5, 30, 200):
        make_ckpt(tmp_path, step)
    make_ckpt(tmp_path, 300, complete=False)  # no trainer_state.json: not a checkpoint
    (tmp_path / "ckpt-000400.tmp").mkdir()
    assert [checkpoint_step(p) for p in list_checkpoints(tmp_path)] == [5, 30, 200]
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-000200"
    assert resolve_resume(tmp_path, "latest") == tmp_path / "ckpt-000200"
    assert resolve_resume(tmp_path, None) is None and resolve_resume(tmp_path / "none", "latest") is None
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_resume(tmp_path, tmp_path / "ckpt-000300")
    assert remove_stale(tmp_path) == [tmp_path / "ckpt-000400.tmp"]
    assert not (tmp_path / "ckpt-000400.tmp").exists()


def test_prune_keeps_last_k(tmp_path):
    for step in range(1, 6):
        make_ckpt(tmp_path, step)
    assert [checkpoint_step(p) for p in prune(tmp_path, 2)] == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000004", "ckpt-000005"]
    assert prune(tmp_path, 0) == []


def test_loop_retention_and_failed_save_keeps_previous(tmp_path):
    """keep_last=2 leaves the last two; an exception inside save 4 leaves ckpt 3 as latest, loadable."""

    def fail_at_4(tmp: Path):
        if tmp.name.startswith(checkpoint_name(4)):
            raise OSError("disk full")

    with Trainer(cfg(tmp_path, 6)) as trainer, pytest.raises(OSError, match="disk full"):
        fit(trainer, before_commit=fail_at_4)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["ckpt-000002", "ckpt-000003", "ckpt-000004.tmp"]
    with Trainer(cfg(tmp_path, 3, resume="latest")) as trainer:
        result = fit(trainer)
    assert result.step == 3 and result.resumed_from.name == "ckpt-000003"
    assert not (tmp_path / "checkpoints" / "ckpt-000004.tmp").exists()


KILL_SCRIPT = """
import sys, time
from pathlib import Path
from recipes import train_toy_regression as toy
from soundctm.train import TrainConfig, Trainer

out = Path(sys.argv[1])

def slow_commit(tmp):
    (out / ("saving-" + tmp.name)).touch()
    time.sleep(0.25)

cfg = TrainConfig(steps=10_000, batch_size=8, lr=1e-2, ema_decays=(0.9,), ckpt_every=1, keep_last=2, log_every=1,
                  seed=3, out_dir=out, progress=False, tensorboard=False, cpu=True)
with Trainer(cfg) as trainer:
    trainer.fit({"net": toy.MLP(toy.ModelConfig(in_dim=4, hidden=8, depth=1, dropout=0.1))},
                toy.make_loss_fn(0.9), toy.make_dataset(toy.DataConfig(40), 4), before_commit=slow_commit)
"""


def test_sigkill_during_save_leaves_last_checkpoint_loadable(tmp_path):
    script = tmp_path / "save_loop.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    out = tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # the script imports recipes.*
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env)
    marker = out / f"saving-{checkpoint_name(3)}.tmp"
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), "the training subprocess never reached the third save"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    ckpt_dir = out / "checkpoints"
    assert (ckpt_dir / "ckpt-000003.tmp" / "model.safetensors").exists()  # killed mid-save
    assert latest_checkpoint(ckpt_dir) == ckpt_dir / "ckpt-000002"
    saved = load_file(ckpt_dir / "ckpt-000002" / "model.safetensors")

    with Trainer(cfg(out, 2, resume="latest")) as trainer:
        result = fit(trainer)
        weights = trainer.unwrapped("net").state_dict()
    assert result.step == 2 and result.resumed_from == ckpt_dir / "ckpt-000002"
    assert saved.keys() == weights.keys() and all(torch.equal(saved[k], weights[k]) for k in saved)
    assert not (ckpt_dir / "ckpt-000003.tmp").exists()
