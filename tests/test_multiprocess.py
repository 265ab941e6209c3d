"""Two gloo processes on CPU via ``accelerate launch``: identical ranks, 1-process equivalence, 2→1 resume."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))
import train_toy_regression as toy  # noqa: E402

ACCELERATE = Path(sys.executable).with_name("accelerate")
CONFIG = ROOT / "recipes" / "configs" / "toy_regression.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recipe_args(out_dir: Path, steps: int, *extra: str) -> list[str]:
    sets = [f"train.out_dir={out_dir}", f"train.steps={steps}", "train.cpu=true", "train.progress=false",
            "train.tensorboard=false", "train.ckpt_every=10", "train.keep_last=0", "train.batch_size=16",
            "model.hidden=32", "data.num_items=200", *extra]
    return ["--config", str(CONFIG)] + [arg for s in sets for arg in ("--set", s)]


def launch_two_processes(out_dir: Path, steps: int, *extra: str) -> None:
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           str(ROOT / "recipes" / "train_toy_regression.py"), *recipe_args(out_dir, steps, *extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def digests(out_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out_dir.glob("digest-rank*.json"))]


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate launcher not installed")
def test_two_processes_agree_match_one_process_and_resume_in_one(tmp_path):
    # no dropout or input jitter: 2 ranks × 8 samples must then reproduce 1 process × 16 samples
    # (grad_accum=2 also exercises the no_sync micro-steps)
    plain = ("model.dropout=0.0", "data.jitter=0.0", "train.grad_accum=2")
    two, one = tmp_path / "two", tmp_path / "one"
    launch_two_processes(two, 20, *plain)
    ranks = digests(two)
    assert len(ranks) == 2 and ranks[0] == ranks[1] and ranks[0]["step"] == 20

    assert toy.main(recipe_args(one, 20, *plain)) == 0
    w_two = load_file(two / "checkpoints" / "ckpt-000020" / "model.safetensors")
    w_one = load_file(one / "checkpoints" / "ckpt-000020" / "model.safetensors")
    for key in w_one:
        torch.testing.assert_close(w_two[key], w_one[key], atol=1e-5, rtol=1e-4)

    # the 2-process checkpoint loads bit-exactly in 1 process (weights, EMA, optimizer) ...
    resumed = tmp_path / "resumed"
    shutil.copytree(two / "checkpoints", resumed / "checkpoints")
    assert toy.main(recipe_args(resumed, 20, *plain, "train.resume=latest")) == 0
    assert digests(resumed) == [ranks[0]]
    # ... and training continues from it
    assert toy.main(recipe_args(resumed, 30, *plain, "train.resume=latest")) == 0
    assert digests(resumed)[0]["step"] == 30 and digests(resumed)[0]["net"] != ranks[0]["net"]


@pytest.mark.slow
@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate launcher not installed")
def test_two_processes_with_dropout_stay_identical(tmp_path):
    """Dropout masks differ per rank (seeded by rank) but DDP keeps the weights bitwise identical."""
    launch_two_processes(tmp_path, 10, "model.dropout=0.2", "train.grad_accum=2")
    ranks = digests(tmp_path)
    assert len(ranks) == 2 and ranks[0] == ranks[1] and ranks[0]["step"] == 10
