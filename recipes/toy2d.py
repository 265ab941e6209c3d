"""CTM on 2-D toy data: the whole method on a CPU in minutes, checked against exact answers.

Teacher: the exact closed-form denoiser of a Gaussian mixture ("gmm"), or an MLP trained with DSM for data
without one (checkerboard, swiss_roll, rings). Student: a two-time MLP distilled with the core's ``ctm_loss``.

    python recipes/toy2d.py --data gmm --steps 3000 --out benchmarks/results/toy2d
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from soundctm.core import losses, samplers, schedule
from soundctm.core.precond import CTMPrecond, EDMDenoiser
from soundctm.data.toy2d import exact_mixture, sample_dataset
from soundctm.metrics.sample_distance import sliced_wasserstein
from soundctm.nn.toy import ToyMLP, ToyMLPConfig


@dataclass(frozen=True)
class ToyConfig:
    data: str = "gmm"
    steps: int = 3000
    batch: int = 256
    lr: float = 1e-3
    grid: int = 18
    max_k: int | None = None
    ema: float = 0.99
    dsm_weight: float = 1.0  # 0 disables the DSM auxiliary term; otherwise scaled by the adaptive weight
    sigma_data: float = 0.5
    hidden: int = 256
    teacher_steps: int = 4000
    seed: int = 0


def train_teacher(cfg: ToyConfig, generator: torch.Generator) -> EDMDenoiser:
    """DSM training of an MLP denoiser (used when the data has no closed-form denoiser)."""
    net = EDMDenoiser(ToyMLP(ToyMLPConfig(hidden=cfg.hidden)), cfg.sigma_data)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    for _ in range(cfg.teacher_steps):
        x0 = sample_dataset(cfg.data, cfg.batch, generator)
        sigma = schedule.sample_lognormal(cfg.batch, generator=generator)
        loss = losses.dsm_loss(net, x0, sigma, sigma_data=cfg.sigma_data).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval().requires_grad_(False)


def build_teacher(cfg: ToyConfig, generator: torch.Generator):
    """The exact mixture denoiser when there is one, else a DSM-trained MLP."""
    gmm = exact_mixture(cfg.data)
    return gmm.denoiser if gmm is not None else train_teacher(cfg, generator)


def distill(cfg: ToyConfig, teacher, generator: torch.Generator, log_every: int = 0) -> CTMPrecond:
    """CTM distillation: ctm_loss (+ adaptive-weighted DSM on g(x, σ, σ)); returns the EMA student."""
    student = CTMPrecond(ToyMLP(ToyMLPConfig(hidden=cfg.hidden, two_time=True)), cfg.sigma_data)
    target = copy.deepcopy(student).requires_grad_(False)
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    grid = schedule.ctm_grid(cfg.grid)
    last = student.net.out[-1].weight
    for step in range(cfg.steps):
        x0 = sample_dataset(cfg.data, cfg.batch, generator)
        out = losses.ctm_loss(student, target, teacher, x0, grid, max_k=cfg.max_k, generator=generator)
        loss = out.loss.mean()
        if cfg.dsm_weight > 0:
            sigma = schedule.sample_half_lognormal_half_grid(cfg.batch, grid, generator=generator)
            dsm = losses.dsm_loss(student.denoiser(), x0, sigma, sigma_data=cfg.sigma_data).mean()
            loss = loss + cfg.dsm_weight * losses.adaptive_weight(loss, dsm, last) * dsm
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p_t, p in zip(target.parameters(), student.parameters()):
                p_t.lerp_(p, 1 - cfg.ema)
        if log_every and step % log_every == 0:
            print(f"step {step:5d}  ctm {out.loss.mean().item():.5f}", flush=True)
    return target.eval()


def exact_endpoint(teacher, x_T: torch.Tensor, n: int = 256) -> torch.Tensor:
    """The teacher's PF-ODE endpoint from σ_max to 0 with a fine Heun solve."""
    return samplers.sample_ode(teacher, x_T, schedule.append_zero(schedule.karras_sigmas(n)), "heun")


def teacher_samples(teacher, x_T: torch.Tensor, steps: int, method: str = "heun") -> torch.Tensor:
    """Teacher ODE sampling with ``steps`` steps from σ_max to 0 (EDM: Heun costs 2·steps − 1 evaluations)."""
    return samplers.sample_ode(teacher, x_T, schedule.append_zero(schedule.karras_sigmas(steps)), method)


def ctm_samples(student: CTMPrecond, x_T: torch.Tensor, steps: int, gamma: float, seed: int = 0) -> torch.Tensor:
    """CTM γ-sampling with ``steps`` jumps."""
    with torch.no_grad():
        return samplers.sample_ctm(student, x_T, schedule.karras_sigmas(steps + 1), gamma,
                                   generator=torch.Generator().manual_seed(seed))


def evaluate(cfg: ToyConfig, teacher, student, n: int = 2000, seed: int = 123) -> list[dict]:
    """Rows of method × NFE: distance to the exact ODE endpoint of the same x_T, SW₂ to data, wall time."""
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n, 2, generator=g) * schedule.SIGMA_MAX
    data = sample_dataset(cfg.data, n, g)
    with torch.no_grad():
        ref = exact_endpoint(teacher, x_T)
    rows = []

    def add(method, nfe, fn, gamma=None):
        t0 = time.perf_counter()
        with torch.no_grad():
            x = fn()
        rows.append({"method": method, "nfe": nfe, "gamma": gamma,
                     "endpoint_l2": float((x - ref).norm(dim=1).mean()),
                     "sw2_to_data": sliced_wasserstein(x, data), "seconds": time.perf_counter() - t0})

    for steps in (1, 2, 4, 8, 40):
        add("teacher-heun", 2 * steps - 1, lambda s=steps: teacher_samples(teacher, x_T, s))
    for steps in (1, 2, 4):
        for gamma in (0.0, 0.5, 1.0):
            add("ctm", steps, lambda s=steps, gm=gamma: ctm_samples(student, x_T, s, gm), gamma)
    rows.append({"method": "data-vs-data", "nfe": 0, "gamma": None, "endpoint_l2": None,
                 "sw2_to_data": sliced_wasserstein(sample_dataset(cfg.data, n, g), data), "seconds": 0.0})
    return rows


def plot(cfg: ToyConfig, teacher, student, path: Path, n: int = 3000) -> None:
    """Scatter panels: data, teacher 40-step Heun, CTM 1-step, CTM 4-step at γ = 0, 0.5, 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(7)
    x_T = torch.randn(n, 2, generator=g) * schedule.SIGMA_MAX
    with torch.no_grad():
        panels = [("data", sample_dataset(cfg.data, n, g)), ("teacher Heun 40", teacher_samples(teacher, x_T, 40)),
                  ("CTM 1 step", ctm_samples(student, x_T, 1, 0.0))]
        panels += [(f"CTM 4 steps γ={gm}", ctm_samples(student, x_T, 4, gm)) for gm in (0.0, 0.5, 1.0)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
    for ax, (title, pts) in zip(axes, panels):
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.5)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-1.6, 1.6)
        ax.set_ylim(-1.6, 1.6)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="gmm", choices=["gmm", "checkerboard", "swiss_roll", "rings"])
    p.add_argument("--steps", type=int, default=ToyConfig.steps)
    p.add_argument("--grid", type=int, default=ToyConfig.grid)
    p.add_argument("--max-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/toy2d")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    torch.manual_seed(args.seed)
    cfg = ToyConfig(data=args.data, steps=args.steps, grid=args.grid, max_k=args.max_k, seed=args.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    teacher = build_teacher(cfg, g)
    student = distill(cfg, teacher, g, log_every=500)
    train_s = time.perf_counter() - t0
    rows = evaluate(cfg, teacher, student)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(cfg, teacher, student, out.with_name(out.name + f"_{cfg.data}.png"))
    result = {"config": asdict(cfg), "train_seconds": train_s, "rows": rows}
    out.with_name(out.name + f"_{cfg.data}.json").write_text(json.dumps(result, indent=2))
    for r in rows:
        print(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
