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

from recipes import train_toy_regression as toy

ROOT = Path(__file__).resolve().parents[1]

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


def accelerate_launch(script: Path, *args: str) -> None:
    """Run ``script`` in 2 gloo CPU processes (``--multi_gpu`` with no visible GPU) and check it succeeds."""
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           str(script), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def launch_two_processes(out_dir: Path, steps: int, *extra: str) -> None:
    accelerate_launch(ROOT / "recipes" / "train_toy_regression.py", *recipe_args(out_dir, steps, *extra))


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


GROUPS_SCRIPT = """
import json, sys
from pathlib import Path
import torch
from torch import nn
from soundctm.train import TrainConfig, Trainer
from soundctm.train.export import state_digest

def linear(seed):
    torch.manual_seed(seed)
    return nn.Linear(4, 1)

def loss_a(batch, models, step, rng):
    x = batch[0] + 0.1 * torch.randn(batch[0].shape, generator=rng)
    return ((models["a"](x) + models["b"](x)) ** 2).mean(), {}

def loss_b(batch, models, step, rng):
    with torch.no_grad():
        fake = models["a"](batch[0])
    return ((models["b"](batch[0]) - fake - 1) ** 2).mean(), {}

out = Path(sys.argv[1])
cfg = TrainConfig(steps=6, batch_size=8, grad_accum=2, lr=1e-2, ema_decays=(0.9,), ckpt_every=3, log_every=2,
                  out_dir=out, progress=False, tensorboard=False, cpu=True)
data = torch.utils.data.TensorDataset(torch.randn(40, 4, generator=torch.Generator().manual_seed(5)))
with Trainer(cfg) as trainer:
    trainer.fit({"a": linear(1), "b": linear(2)}, {"a": loss_a, "b": loss_b}, data,
                trainable={"a": ["a"], "b": ["b"]}, ema_models=["a"])
    digest = {n: state_digest(trainer.unwrapped(n).state_dict()) for n in "ab"}
    digest["opt"] = [state_digest(o.state_dict()["state"]) for o in trainer.optimizers.values()]
    (out / f"digest-rank{trainer.rank}.json").write_text(json.dumps(digest))
"""


@pytest.mark.slow
@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate launcher not installed")
def test_two_processes_with_optimizer_groups(tmp_path):
    """Adversarial-style optimizer groups under DDP: both ranks end identical."""
    script = tmp_path / "groups.py"
    script.write_text(GROUPS_SCRIPT)
    accelerate_launch(script, str(tmp_path / "run"))
    ranks = digests(tmp_path / "run")
    assert len(ranks) == 2 and ranks[0] == ranks[1]
