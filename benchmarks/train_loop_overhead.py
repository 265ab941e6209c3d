"""Throughput of the shared training loop vs a bare PyTorch loop, and its data-wait accounting.

    .venv/bin/python -m benchmarks.train_loop_overhead [--steps 300] [--batch 256] [--hidden 256]

Writes benchmarks/results/train_loop_overhead.{md,json}. One CPU thread, tiny MLP: this measures the loop's own
per-step cost (per-micro-step reseeding, EMA update, logging windows, device moves), which is largest relative to
compute for tiny models; real audio models spend far more time in forward/backward.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from recipes import train_toy_regression as toy
from soundctm.train import TrainConfig, Trainer
from soundctm.train.ema import ema_update, frozen_copy
from soundctm.train.logging import read_metrics

ROOT = Path(__file__).resolve().parents[1]


class BatchedTensors(torch.utils.data.Dataset):
    """Tensors fetched a whole batch at a time through ``__getitems__`` (what a latent cache should offer)."""

    def __init__(self, *tensors):
        self.tensors = tensors

    def __len__(self):
        return len(self.tensors[0])

    def __getitem__(self, i):
        return tuple(t[i] for t in self.tensors)

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices)
        return tuple(t[idx] for t in self.tensors)


def bare_loop(model, x, y, steps, batch, lr, clip_and_ema: bool) -> float:
    """Steps/s of a hand-written AdamW loop over random batches of in-memory tensors (optionally with the
    Trainer's per-step extras: grad-norm clipping and one EMA)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    ema = frozen_copy(model)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(x), (batch,), generator=g)
        loss = F.mse_loss(model(x[idx]), y[idx])
        loss.backward()
        if clip_and_ema:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if clip_and_ema:
            ema_update(ema, model, 0.999)
    return steps / (time.perf_counter() - start)


def trainer_loop(model, data, steps, batch, lr, collate_fn=None) -> dict[str, float]:
    """Median steps/s and data-wait share over the logged windows (first window dropped) of `Trainer.fit`."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(steps=steps, batch_size=batch, lr=lr, ema_decays=(0.999,), log_every=max(steps // 6, 1),
                          ckpt_every=10**9, out_dir=Path(tmp), progress=False, tensorboard=False, cpu=True)
        with Trainer(cfg) as trainer:
            trainer.fit({"net": model}, toy.make_loss_fn(None, 0.0), data, collate_fn=collate_fn)
        rows = read_metrics(Path(tmp) / "logs")[1:]
    return {"steps_per_s": statistics.median(r["perf/steps_per_s"] for r in rows),
            "data_wait_frac": statistics.median(r["perf/data_wait_frac"] for r in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model_cfg = toy.ModelConfig(in_dim=8, hidden=args.hidden, depth=3, dropout=0.0)
    x, y = toy.make_dataset(toy.DataConfig(num_items=8192), 8).tensors

    def fresh():
        torch.manual_seed(0)
        return toy.MLP(model_cfg)

    results = {
        "bare loop: AdamW": {"steps_per_s": bare_loop(fresh(), x, y, args.steps, args.batch, 1e-3, False)},
        "bare loop: AdamW + clip + EMA": {
            "steps_per_s": bare_loop(fresh(), x, y, args.steps, args.batch, 1e-3, True)},
        "Trainer, TensorDataset (per-item + collate)": trainer_loop(
            fresh(), torch.utils.data.TensorDataset(x, y), args.steps, args.batch, 1e-3),
        "Trainer, __getitems__ batched dataset": trainer_loop(
            fresh(), BatchedTensors(x, y), args.steps, args.batch, 1e-3, collate_fn=lambda b: b),
    }
    bare = results["bare loop: AdamW + clip + EMA"]["steps_per_s"]
    for r in results.values():
        r["relative_to_bare"] = r["steps_per_s"] / bare
    write_results(results, {**vars(args), "load_average": os.getloadavg()[0], "cpus": os.cpu_count()})
    return 0


def write_results(results: dict, setup: dict) -> None:
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_loop_overhead.json").write_text(json.dumps({"setup": setup, "results": results}, indent=2) + "\n")
    lines = [
        "# Shared training loop: throughput and data-wait share",
        "",
        f"MLP 8→{setup['hidden']}×3→1, batch {setup['batch']}, {setup['steps']} steps, 1 CPU thread, EMA 0.999, "
        "fp32. Command: `.venv/bin/python -m benchmarks.train_loop_overhead`",
        "",
        "| loop | steps/s | relative to bare AdamW + clip + EMA | data wait share (logged by the Trainer) |",
        "|---|---|---|---|",
    ]
    for name, r in results.items():
        wait = f"{r['data_wait_frac']:.1%}" if "data_wait_frac" in r else "—"
        lines.append(f"| {name} | {r['steps_per_s']:.1f} | {r['relative_to_bare']:.2f} | {wait} |")
    lines += ["", f"Load average during the run: {setup['load_average']:.1f} on {setup['cpus']} CPUs (a shared VM), "
              "so absolute numbers are noisy;",
              "the Trainer adds per-step seeding, DataLoader batching, accelerate wrappers and log windows."]
    (out / "train_loop_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
