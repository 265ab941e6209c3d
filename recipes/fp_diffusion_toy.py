"""FP-Diffusion on 2-D toys: does the score Fokker–Planck regulariser lower the PF-ODE negative log-likelihood?

Protocol (paired, after FP-Diffusion's fine-tuning of pre-trained score models, Lai et al. 2023): per dataset and
seed an MLP denoiser is pre-trained with DSM, then fine-tuned for the same number of steps with plain DSM (the
control) and with DSM + α·score-FPE residual for each α of a grid, on identical data/noise streams. Every model is
scored by the held-out NLL log p_{σ_min}(x) from the probability-flow ODE (exact divergence, Dormand–Prince), by its
score-FPE residual ‖σ²r‖/√d versus σ, and by its held-out DSM loss.

    python recipes/fp_diffusion_toy.py --out benchmarks/results/fp_diffusion_toy   # ≈ 17 CPU-minutes on one thread
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from soundctm.core import schedule
from soundctm.core.fp_loss import FP_WEIGHTS, FPConfig, fp_dsm_loss
from soundctm.core.fpe import denoiser_score, score_fpe_residual
from soundctm.core.likelihood import pf_ode_log_likelihood
from soundctm.core.precond import EDMDenoiser
from soundctm.data import toy2d
from soundctm.data.toy2d import exact_mixture, sample_dataset
from soundctm.fileio import with_extension
from soundctm.nn.toy import ToyMLP, ToyMLPConfig

DATASETS = ("checkerboard", "swiss_roll", "gmm", "rings")


@dataclass(frozen=True)
class FPToyConfig:
    datasets: tuple = DATASETS
    alphas: tuple = (0.01, 0.1, 1.0)
    seeds: tuple = (0, 1, 2)
    pretrain_steps: int = 2500
    finetune_steps: int = 800
    batch: int = 256
    lr: float = 2e-3
    finetune_lr: float = 1e-3
    hidden: int = 128
    depth: int = 3
    n_freqs: int = 8
    sigma_data: float = 0.5
    p_mean: float = -1.0  # training ln σ ~ N(p_mean, p_std²): wider than EDM's so likelihoods see small/large σ
    p_std: float = 1.6
    fp_fraction: float = 0.25  # residual on the first quarter of each batch (third derivatives are costly)
    fp_weighting: str = "unit"
    sigma_min: float = 0.002
    rtol: float = 1e-4
    n_test: int = 1000
    grid: int = 48
    extent: float = 1.5
    residual_sigmas: tuple = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def build_denoiser(cfg: FPToyConfig, seed: int) -> EDMDenoiser:
    torch.manual_seed(seed)
    return EDMDenoiser(ToyMLP(ToyMLPConfig(hidden=cfg.hidden, depth=cfg.depth, n_freqs=cfg.n_freqs)),
                       cfg.sigma_data)


def train(D: EDMDenoiser, cfg: FPToyConfig, data: str, steps: int, lr: float, fp: FPConfig, seed: int,
          decay: bool = False) -> EDMDenoiser:
    """Adam on fp_dsm_loss (α = 0 is plain DSM); data, σ and noise come from a generator seeded by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(D.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if decay else None
    for _ in range(steps):
        x0 = sample_dataset(data, cfg.batch, g)
        sigma = schedule.sample_lognormal(cfg.batch, cfg.p_mean, cfg.p_std, generator=g)
        noise = torch.randn(x0.shape, generator=g)
        loss = fp_dsm_loss(D, x0, sigma, fp, noise, cfg.sigma_data).loss.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    return D.eval()


def heldout_nll(D, x: torch.Tensor, cfg: FPToyConfig) -> tuple[torch.Tensor, int]:
    """−log p_{σ_min}(x) ``[n]`` (nats) from the PF-ODE, and the solver's NFE."""
    res = pf_ode_log_likelihood(D, x, sigma_min=cfg.sigma_min, rtol=cfg.rtol, atol=cfg.rtol)
    return -res.log_prob, res.nfe


def residual_profile(D, x0: torch.Tensor, cfg: FPToyConfig, seed: int = 99) -> list[float]:
    """Mean scale-free score-FPE residual ‖σ²r‖/√d on x0 + σn for each σ of ``cfg.residual_sigmas``."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in cfg.residual_sigmas:
        sigma = torch.full((len(x0),), s)
        x = x0 + s * torch.randn(x0.shape, generator=g)
        res = score_fpe_residual(denoiser_score(D), x, sigma)
        out.append(float(res.scaled_norm(sigma).mean()))
    return out


def heldout_dsm(D, x0: torch.Tensor, cfg: FPToyConfig, seed: int = 98) -> float:
    """Mean DSM loss on held-out data (fixed σ and noise draws)."""
    g = torch.Generator().manual_seed(seed)
    sigma = schedule.sample_lognormal(len(x0), cfg.p_mean, cfg.p_std, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        return float(fp_dsm_loss(D, x0, sigma, FPConfig(alpha=0.0), noise, cfg.sigma_data).dsm.mean())


def grid_points(cfg: FPToyConfig) -> torch.Tensor:
    """The heat-map grid ``[grid², 2]`` over [−extent, extent]² (row-major, y up)."""
    ax = torch.linspace(-cfg.extent, cfg.extent, cfg.grid)
    yy, xx = torch.meshgrid(ax.flip(0), ax, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)


def model_density(D, cfg: FPToyConfig) -> torch.Tensor:
    """exp(log p) of the model on the grid ``[grid, grid]``."""
    res = pf_ode_log_likelihood(D, grid_points(cfg), sigma_min=cfg.sigma_min, rtol=cfg.rtol, atol=cfg.rtol)
    return res.log_prob.exp().reshape(cfg.grid, cfg.grid)


def _default(fn, name: str):
    """A keyword default of a dataset sampler (one source of truth for its parameters)."""
    return inspect.signature(fn).parameters[name].default


def checkerboard_log_prob(x: torch.Tensor) -> torch.Tensor:
    """log p of the checkerboard sampler: uniform (density 1/(#black·cell²)) on squares with i + j even."""
    squares = _default(toy2d.checkerboard, "squares")
    cell = 2.0 / squares
    ij = torch.floor((x + 1) / cell)
    inside = ((x > -1) & (x < 1)).all(1) & ((ij.sum(1) % 2) == 0)
    log_dens = -math.log(squares**2 / 2 * cell**2)
    return torch.where(inside, torch.full_like(x[:, 0], log_dens), torch.full_like(x[:, 0], -math.inf))


def rings_log_prob(x: torch.Tensor) -> torch.Tensor:
    """log p of the rings sampler: radius ~ (1/K)Σ N(r_k, s²), angle uniform ⇒ p(x) = p(|x|)/(2π|x|)."""
    radii, s = torch.tensor(_default(toy2d.rings, "radii"), dtype=x.dtype), _default(toy2d.rings, "noise")
    r = x.norm(dim=1, keepdim=True)
    log_r = torch.logsumexp(-0.5 * ((r - radii) / s) ** 2, 1) - math.log(len(radii) * s * math.sqrt(2 * math.pi))
    return log_r - torch.log(2 * math.pi * r[:, 0])


def swiss_roll_log_prob(x: torch.Tensor, n_t: int = 20_000, chunk: int = 2048) -> torch.Tensor:
    """log p of the swiss-roll sampler: E_t N(x; t(cos t, sin t)/15, s²I), t ~ U[1.5π, 4.5π], by quadrature."""
    s = _default(toy2d.swiss_roll, "noise")
    t = 1.5 * math.pi * (1 + 2 * (torch.arange(n_t, dtype=x.dtype) + 0.5) / n_t)
    curve = torch.stack([t * t.cos(), t * t.sin()], 1) / 15.0
    out = []
    for xc in x.split(chunk):
        sq = torch.cdist(xc, curve) ** 2
        out.append(torch.logsumexp(-0.5 * sq / s**2, 1) - math.log(n_t * 2 * math.pi * s**2))
    return torch.cat(out)


REFERENCE_LOG_PROB = {
    "checkerboard": checkerboard_log_prob,
    "rings": rings_log_prob,
    "swiss_roll": swiss_roll_log_prob,
    "gmm": lambda x: exact_mixture("gmm").log_prob(x.double()).to(x.dtype),
}


def data_density(data: str, cfg: FPToyConfig) -> torch.Tensor:
    """The true data density on the heat-map grid ``[grid, grid]``."""
    return REFERENCE_LOG_PROB[data](grid_points(cfg).double()).exp().float().reshape(cfg.grid, cfg.grid)


def reference_nll(data: str, x: torch.Tensor) -> float:
    """The true −mean log p_data of the test points (the floor any model's NLL approaches)."""
    return float(-REFERENCE_LOG_PROB[data](x.double()).mean())


def evaluate(D, x_test: torch.Tensor, cfg: FPToyConfig) -> dict:
    nll, nfe = heldout_nll(D, x_test, cfg)
    return {"nll": float(nll.mean()), "nll_sem": float(nll.std() / len(nll) ** 0.5), "nfe": nfe,
            "residual": residual_profile(D, x_test[:512], cfg), "dsm": heldout_dsm(D, x_test, cfg)}


def run_pair(cfg: FPToyConfig, data: str, seed: int, x_test: torch.Tensor, log) -> dict:
    """Pre-train, then fine-tune with DSM and with DSM+FP for each α; returns {label: metrics} (+ models)."""
    t0 = time.perf_counter()
    base = train(build_denoiser(cfg, seed), cfg, data, cfg.pretrain_steps, cfg.lr, FPConfig(alpha=0.0), seed)
    rows, models = {}, {}
    for alpha in (0.0, *cfg.alphas):
        fp = FPConfig(alpha=alpha, weighting=cfg.fp_weighting, fp_fraction=cfg.fp_fraction)
        t1 = time.perf_counter()
        D = train(copy.deepcopy(base).train(), cfg, data, cfg.finetune_steps, cfg.finetune_lr, fp, 1000 + seed,
                  decay=True)
        train_s = time.perf_counter() - t1
        label = "dsm" if alpha == 0 else f"fp{alpha:g}"
        rows[label] = {"alpha": alpha, "train_seconds": train_s, **evaluate(D, x_test, cfg)}
        models[label] = D
        log(f"{data:12s} seed {seed} {label:7s} nll {rows[label]['nll']:.4f}  dsm {rows[label]['dsm']:.4f}  "
            f"train {train_s:.1f}s  total {time.perf_counter() - t0:.1f}s")
    return {"rows": rows, "models": models}


def mean_std(v: list[float]) -> tuple[float, float]:
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def summarise(per_seed: dict, ref: float | None) -> dict:
    """Mean ± std over seeds of NLL, DSM and residuals per label, and the paired NLL change (FP − DSM)."""
    labels = list(next(iter(per_seed.values())).keys())
    out = {"reference_nll": ref, "labels": {}}
    for lab in labels:
        nll = [per_seed[s][lab]["nll"] for s in per_seed]
        diff = [per_seed[s][lab]["nll"] - per_seed[s]["dsm"]["nll"] for s in per_seed]
        dsm = [per_seed[s][lab]["dsm"] for s in per_seed]
        res = [per_seed[s][lab]["residual"] for s in per_seed]
        out["labels"][lab] = {
            "nll": mean_std(nll), "delta_nll_vs_dsm": mean_std(diff), "dsm": mean_std(dsm),
            "residual_mean": [statistics.fmean(col) for col in zip(*res)],
            "n_seeds_nll_lower": sum(d < 0 for d in diff),
        }
    return out


def plot(cfg: FPToyConfig, panels: dict, summary: dict, path: Path) -> None:
    """Rows = datasets; columns: data density, DSM density, DSM+FP density, FPE residual versus σ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 4, figsize=(13, 3.1 * len(panels)), squeeze=False)
    ext = [-cfg.extent, cfg.extent, -cfg.extent, cfg.extent]
    for row, (data, p) in zip(axes, panels.items()):
        vmax = float(p["data"].quantile(0.995))
        for ax, key in zip(row[:3], ("data", "dsm", p["fp_label"])):
            ax.imshow(p[key].numpy(), extent=ext, cmap="magma", vmin=0, vmax=vmax)
            s = summary[data]["labels"].get(key)
            nll = f"  NLL {s['nll'][0]:.3f}" if s else ""
            ax.set_title(f"{data}: {'data' if key == 'data' else key}{nll}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        ax = row[3]
        for lab, s in summary[data]["labels"].items():
            ax.loglog(cfg.residual_sigmas, s["residual_mean"], marker="o", ms=3, label=lab)
        ax.set_xlabel("σ", fontsize=8)
        ax.set_ylabel("mean ‖σ² r‖/√d", fontsize=8)
        ax.legend(fontsize=7)
        ax.set_title(f"{data}: score-FPE residual", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fmt(ms: tuple[float, float], digits: int = 3) -> str:
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def markdown(cfg: FPToyConfig, summary: dict, seconds: float, cpu_seconds: float, command: str) -> str:
    lines = ["# FP-Diffusion on 2-D toys: held-out PF-ODE NLL with and without the score-FPE regulariser", "",
             f"Command: `{command}` (1 CPU thread: {cpu_seconds / 60:.1f} CPU min, {seconds / 60:.1f} min wall "
             f"on a shared machine). MLP {cfg.hidden}×{cfg.depth}; seeds {list(cfg.seeds)}; "
             f"pre-train {cfg.pretrain_steps} DSM steps, then fine-tune {cfg.finetune_steps} steps with DSM "
             f"(`dsm`) or DSM + α·(w(σ)‖r‖/√d)² with w = `{cfg.fp_weighting}` (see `FP_WEIGHTS`; `unit` = σ², "
             "equal up to a constant to FP-Diffusion's g²-weighting with m = 2) (`fpα`, residual on "
             f"{cfg.fp_fraction:.0%} of each batch), same "
             f"data/noise streams. NLL = −log p_σmin(x) in nats (σ_min = {cfg.sigma_min}) on {cfg.n_test} "
             "held-out points, exact divergence, Dormand–Prince rtol = atol = "
             f"{cfg.rtol}; mean ± std over seeds. ΔNLL is the paired change versus `dsm` (negative = FP better).",
             "", "| data | model | NLL | ΔNLL vs dsm | seeds lower | held-out DSM | residual σ≤0.03 | residual σ≥1 |",
             "|---|---|---|---|---|---|---|---|"]
    small = [i for i, s in enumerate(cfg.residual_sigmas) if s <= 0.03]
    large = [i for i, s in enumerate(cfg.residual_sigmas) if s >= 1.0]
    for data, summ in summary.items():
        ref = summ["reference_nll"]
        lines.append(f"| {data} | true density | {ref:.3f} | | | | | |")
        for lab, s in summ["labels"].items():
            r = s["residual_mean"]
            lines.append(
                f"| {data} | {lab} | {fmt(s['nll'])} | {fmt(s['delta_nll_vs_dsm'])} | "
                f"{s['n_seeds_nll_lower']}/{len(cfg.seeds)} | {fmt(s['dsm'])} | "
                f"{statistics.fmean(r[i] for i in small):.3g} | {statistics.fmean(r[i] for i in large):.3g} |")
    return "\n".join(lines + ["", *verdict_lines(summary, len(cfg.seeds))]) + "\n"


def verdict_lines(summary: dict, n_seeds: int) -> list[str]:
    """Per dataset: the best α's paired ΔNLL and seed count, the largest α's ΔNLL, the residual reduction."""
    lines = ["## Verdict (computed from the table)", ""]
    helped, hurt = [], []
    for data, summ in summary.items():
        labs = summ["labels"]
        fps = [lab for lab in labs if lab != "dsm"]
        best = min(fps, key=lambda lab: labs[lab]["delta_nll_vs_dsm"][0])
        d, k = labs[best]["delta_nll_vs_dsm"], labs[best]["n_seeds_nll_lower"]
        last = labs[fps[-1]]["delta_nll_vs_dsm"]
        shrink = statistics.fmean(labs["dsm"]["residual_mean"]) / statistics.fmean(labs[fps[-1]]["residual_mean"])
        gap = labs["dsm"]["nll"][0] - summ["reference_nll"]
        lines.append(f"- {data}: best {best}: ΔNLL {fmt(d)} nats ({k}/{n_seeds} seeds lower); {fps[-1]}: ΔNLL "
                     f"{fmt(last)}; mean residual ÷{shrink:.1f} at {fps[-1]}; DSM model is {gap:.3f} nats above "
                     "the true density.")
        if k == n_seeds and d[0] < 0:
            helped.append(f"{data} (by {-d[0]:.3f} nats at {best})")
        if labs[fps[-1]]["n_seeds_nll_lower"] == 0 and last[0] > 0:
            hurt.append(data)
    lines += ["", "The regulariser lowered the NLL on every seed at some α on: "
              + (", ".join(helped) if helped else "no dataset") + f". At the largest α ({fps[-1]}) it raised the NLL "
              "on every seed on: " + (", ".join(hurt) if hurt else "no dataset") + "."]
    return lines


def run(cfg: FPToyConfig, out: Path, command: str, log=print) -> dict:
    torch.set_num_threads(1)
    t0, cpu0 = time.perf_counter(), time.process_time()
    summary, panels, raw = {}, {}, {}
    for data in cfg.datasets:
        x_test = sample_dataset(data, cfg.n_test, torch.Generator().manual_seed(12345))
        per_seed, first = {}, None
        for seed in cfg.seeds:
            res = run_pair(cfg, data, seed, x_test, log)
            per_seed[seed] = res["rows"]
            first = res["models"] if first is None else first
        summary[data] = summarise(per_seed, reference_nll(data, x_test))
        raw[data] = per_seed
        fp_labels = [lab for lab in summary[data]["labels"] if lab != "dsm"]
        best = min(fp_labels, key=lambda lab: summary[data]["labels"][lab]["nll"][0])
        with torch.no_grad():
            panels[data] = {"data": data_density(data, cfg), "dsm": model_density(first["dsm"], cfg),
                            best: model_density(first[best], cfg), "fp_label": best}
        log(f"{data}: done at {time.perf_counter() - t0:.0f}s")
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(cfg, panels, summary, with_extension(out, ".png"))
    with_extension(out, ".md").write_text(markdown(cfg, summary, seconds, cpu_seconds, command))
    result = {"config": asdict(cfg), "seconds": seconds, "cpu_seconds": cpu_seconds, "command": command,
              "summary": summary, "per_seed": raw}
    with_extension(out, ".json").write_text(json.dumps(result, indent=1))
    return result


PRESETS = {
    "full": FPToyConfig(),
    "smoke": FPToyConfig(datasets=("gmm",), alphas=(0.1,), seeds=(0,), pretrain_steps=50, finetune_steps=20,
                         n_test=64, grid=8, residual_sigmas=(0.01, 1.0)),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="full", choices=sorted(PRESETS))
    p.add_argument("--datasets", nargs="+", choices=DATASETS)
    p.add_argument("--alphas", nargs="+", type=float)
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--weighting", choices=sorted(FP_WEIGHTS), help="w(σ) of the residual (default: unit σ²)")
    p.add_argument("--out", default="benchmarks/results/fp_diffusion_toy")
    args = p.parse_args(argv)
    cfg = PRESETS[args.preset]
    if args.alphas is not None:
        if any(a <= 0 for a in args.alphas):
            print("error: --alphas must be > 0 (α = 0 is the DSM control, always run)", file=sys.stderr)
            return 2
        cfg = replace(cfg, alphas=tuple(args.alphas))
    cfg = replace(cfg, **{k: tuple(v) for k, v in (("datasets", args.datasets), ("seeds", args.seeds)) if v})
    cfg = cfg if args.weighting is None else replace(cfg, fp_weighting=args.weighting)
    command = "python recipes/fp_diffusion_toy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    run(cfg, Path(args.out), command.strip(), log=lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
