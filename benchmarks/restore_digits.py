"""Training-free restoration of held-out 8×8 digits: DPS, MPGD, DDRM, GibbsDDRM and replacement with the digits
teacher (x̂₀ = D, 20/50/100 steps) and its CTM student (x̂₀ = jump G(·, σ, σ_min), 1/2/4 jumps), against a plain
baseline per task. Metrics: PSNR to the truth, the digit classifier's label preserved, Fréchet distance of the
classifier features to the train digits, NFE and wall time; blind deblurring also the width error.

    python -m benchmarks.restore_digits --tune --n 256

``--tune`` first picks each (task, method, model)'s step sizes by PSNR on other held-out digits (positions
n … n + tune_n of the held-out split), never on the reported ones. Writes ``--out``.md/.json and one figure per task
``docs/restoration_<task>.png``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from recipes import restore_digits as RD
from soundctm.data.digits import load_digit_split
from soundctm.fileio import with_extension
from soundctm.metrics.digits import DigitClassifier, digit_features
from soundctm.metrics.frechet import frechet_distance_of_embeddings

ROOT = Path(__file__).resolve().parents[1]
STEPS = {"teacher": (20, 50, 100), "student": (1, 2, 4)}
TASK_METHODS = {"inpaint": ("replace", "dps", "mpgd", "ddrm"), "sr": ("dps", "mpgd", "ddrm"),
                "deblur": ("dps", "mpgd", "ddrm"), "deblur_blind": ("ddrm", "gibbs"),
                "denoise": ("dps", "mpgd", "ddrm")}
TUNE_STEPS = {"teacher": 50, "student": 2}
STUDENT_LAST = (0.002, 0.1, 0.3, 1.0)  # the student's last σ before 0 (no role at 1 jump)
GRIDS = {
    "dps": {"zeta": (1.0, 3.0, 10.0, 30.0), "eta": (0.0, 1.0)},
    "mpgd": {"step": (0.1, 0.5, 1.0, 1.5), "n_grad": (1, 5), "eta": (0.0, 1.0)},
    "ddrm": {"eta": (0.5, 0.85, 1.0)},
    "gibbs": {"phi_lr": (1e-4, 3e-4, 1e-3), "phi_steps": (5, 20)},
    "replace": {"eta": (0.5, 1.0)},
}
FIGURE_STEPS = {"teacher": 50, "student": 4}
LABEL_ROWS = (("teacher", 50), ("student", 2), ("student", 4))


@dataclass
class Row:
    task: str
    method: str
    model: str
    steps: int
    nfe: int
    psnr: float | None
    label_kept: float
    frechet: float
    seconds: float
    width_error: float | None = None


def configs(method: str, model: str):
    """Every combination of the method's grid (and, for the student, of its last σ)."""
    grid = dict(GRIDS[method])
    if model == "student":
        grid["sigma_last"] = STUDENT_LAST
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values))


def tune(x: torch.Tensor, seed: int) -> dict:
    """{(task, method, model): the grid point with the best mean PSNR on ``x`` (blind: the smallest width error)}."""
    chosen = {}
    for task, methods in TASK_METHODS.items():
        problem = RD.degrade(task, x, seed + 1)
        for method, model in itertools.product(methods, RD.MODELS):
            best = None
            for hp in configs(method, model):
                out = RD.restore(task, method, model, TUNE_STEPS[model], x, seed=seed, problem=problem, hparams=hp)
                score = (-(out.width - RD.BLUR_WIDTH).abs().mean().item() if method == "gibbs"
                         else RD.psnr_db(out.x, x).mean().item())
                if best is None or score > best[0]:
                    best = (score, hp)
            chosen[(task, method, model)] = best[1]
            print(f"tuned {task} {method} {model}: {best[1]} ({best[0]:.3f})", flush=True)
    return chosen


def scores(clf: DigitClassifier, out: torch.Tensor, x: torch.Tensor, labels: torch.Tensor,
           ref: torch.Tensor) -> tuple[float, float, float]:
    """(mean PSNR dB, label kept %, Fréchet distance to ``ref`` features) of restorations ``out`` of ``x``."""
    out = out.clamp(-1, 1)
    kept = 100 * float((clf(out).argmax(1) == labels).float().mean())
    return float(RD.psnr_db(out, x).mean()), kept, frechet_distance_of_embeddings(digit_features(clf, out), ref)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def evaluate(x: torch.Tensor, labels: torch.Tensor, clf, ref, prior, seed: int,
             label_rows: bool = True) -> tuple[list[Row], dict]:
    """All rows, and per task the figure panels {row name: restored images}."""
    rows, panels = [], {}
    with torch.no_grad():
        truth = scores(clf, x, x, labels, ref)
    rows.append(Row("-", "truth (held-out)", "-", 0, 0, None, truth[1], truth[2], 0.0))
    for task, methods in TASK_METHODS.items():
        problem = RD.degrade(task, x, seed + 1)
        fig = {"truth": x, "degraded": problem.shown}
        bases, sec = timed(lambda p=problem: RD.baselines(p, *prior))
        for name, base in bases.items():
            rows.append(Row(task, name, "-", 0, 0, *scores(clf, base, x, labels, ref), sec / len(bases)))
        fig.update(bases)
        if task == "denoise":  # the plain denoiser applied once at σ_y (1 NFE)
            for model in RD.MODELS:
                net = RD.load_net(model)
                with torch.no_grad():
                    out, sec = timed(lambda m=model, n=net, p=problem: RD.clean_estimate(m)(
                        p.shown, torch.full((len(x),), p.sigma_y), labels=n.null_labels(len(x))))
                rows.append(Row(task, "denoiser at σ_y", model, 1, 1, *scores(clf, out, x, labels, ref), sec))
        for method, model in itertools.product(methods, RD.MODELS):
            for steps in STEPS[model]:
                out, sec = timed(lambda m=method, mo=model, s=steps, t=task, p=problem: RD.restore(
                    t, m, mo, s, x, seed=seed, problem=p))
                width = None if out.width is None else float((out.width - RD.BLUR_WIDTH).abs().mean())
                with torch.no_grad():
                    rows.append(Row(task, method, model, steps, out.nfe, *scores(clf, out.x, x, labels, ref), sec,
                                    width))
                print(rows[-1], flush=True)
                if steps == FIGURE_STEPS[model]:
                    fig[f"{method} {model} {steps}"] = out.x
        if label_rows:  # the same samplers with the prior conditioned on the true class (a reference, not reported)
            for model, steps in LABEL_ROWS:
                method = methods[-1]
                out, sec = timed(lambda m=method, mo=model, s=steps, t=task, p=problem: RD.restore(
                    t, m, mo, s, x, labels, seed=seed, problem=p))
                width = None if out.width is None else float((out.width - RD.BLUR_WIDTH).abs().mean())
                with torch.no_grad():
                    rows.append(Row(task, f"{method}, true label", model, steps, out.nfe,
                                    *scores(clf, out.x, x, labels, ref), sec, width))
        panels[task] = fig
    return rows, panels


def save_figure(panels: dict[str, torch.Tensor], path: Path, n: int = 12) -> None:
    """Rows of ``n`` digits labelled on the left (truth, degraded, baseline, each method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.digits import tile

    names, zoom, label_px = list(panels), 4, 140
    canvas = tile(torch.cat([panels[k][:n] for k in names]), len(names), n, zoom=1)
    h, w = canvas.shape
    fig = plt.figure(figsize=((zoom * w + label_px) / 100, zoom * h / 100), dpi=100)
    ax = fig.add_axes([label_px / (zoom * w + label_px), 0, zoom * w / (zoom * w + label_px), 1])
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    ax.set_yticks([9 * i + 3.5 for i in range(len(names))], names, fontsize=8)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def fmt(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def markdown(rows: list[Row], meta: dict) -> str:
    lines = ["# Restoring held-out digits without training (DPS, MPGD, DDRM, GibbsDDRM)", "",
             f"Command: `{meta['command']}`", "",
             f"{meta['n']} held-out 8×8 digits (never seen in training), prior unconditional (the null label); the "
             f"bundled digits teacher (x̂₀ = D(x, σ)) and the CTM student `{meta['student']}` (x̂₀ = G(x, σ, σ_min)). "
             f"Tasks: inpainting (bottom "
             f"half missing, σ_y = {RD.SIGMA_Y['inpaint']}), 4×4 block means → 8×8 (σ_y = {RD.SIGMA_Y['sr']}), "
             f"Gaussian blur of width {RD.BLUR_WIDTH} px known (σ_y = {RD.SIGMA_Y['deblur']}) and blind "
             f"(GibbsDDRM from width {RD.BLIND_START}; DDRM runs at that wrong width), denoising at σ_y = "
             f"{RD.SIGMA_Y['denoise']}. PSNR in dB for the range [−1, 1]; *label kept* = the project's digit "
             f"classifier reads the true class; FD = Fréchet distance of its features to the {meta['n_train']} train "
             f"digits; NFE = network evaluations (DPS also back-propagates through each); seconds for all "
             f"{meta['n']} digits on one CPU thread (shared machine). Baselines: mean fill (the observed pixels' "
             f"mean fills the hole), bicubic, Wiener (the linear MMSE estimate under the train digits' mean and "
             f"covariance), and for denoising the network's clean estimate at σ_y applied once. Rows *…, true "
             f"label* condition the prior on the digit's class (a reference: the headline rows are unconditional). "
             f"At 1 step, DDRM and DPS return the clean estimate of pure noise (the measurement enters a step only "
             f"towards a σ > 0), so those rows are unconditional samples; MPGD's gradient step on x̂₀ does use y "
             f"at 1 step.", "",
             "| task | method | model | steps | NFE | PSNR ↑ | label kept % ↑ | FD ↓ | width err | s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.task} | {r.method} | {r.model} | {r.steps or ''} | {r.nfe or ''} | {fmt(r.psnr, '.2f')} "
                     f"| {r.label_kept:.1f} | {r.frechet:.2f} | {fmt(r.width_error, '.3f')} | {r.seconds:.2f} |")
    lines += ["", "Step sizes (tuned by PSNR on " + meta["tune_note"] + "):", ""]
    for key, hp in meta["hparams"].items():
        lines.append(f"- {key}: " + ", ".join(f"{k} = {v:g}" for k, v in hp.items()))
    lines += ["", "Figures: " + ", ".join(f"[{t}](../../docs/restoration_{t}.png)" for t in TASK_METHODS), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=256, help="held-out digits reported")
    p.add_argument("--tune", action="store_true", help="tune step sizes first on other held-out digits")
    p.add_argument("--tune-n", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-label-rows", action="store_true", help="skip the class-conditioned reference rows")
    p.add_argument("--classifier", type=Path, default=ROOT / "soundctm/pretrained/digits/classifier")
    p.add_argument("--student", type=Path, default=None, help="a CTM student folder (default: the recipe's)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/restore_digits")
    p.add_argument("--figures", type=Path, default=ROOT / "docs")
    args = p.parse_args(argv)
    if args.student is not None:
        if not (args.student / "config.json").is_file():
            p.error(f"--student {args.student} is not a model folder (no config.json)")
        RD.STUDENT_DIR = args.student
    torch.set_num_threads(1)
    split = load_digit_split()
    if args.n + (args.tune_n if args.tune else 0) > len(split.test_y):
        p.error(f"--n + --tune-n must be <= {len(split.test_y)} held-out digits")
    start = time.perf_counter()
    if args.tune:
        RD.TUNED.update(tune(split.test_x[args.n:args.n + args.tune_n], args.seed + 100))
        tune_note = f"held-out digits {args.n}…{args.n + args.tune_n - 1}, teacher at 50 steps, student at 2 jumps"
    else:
        tune_note = "the values stored in recipes/restore_digits.py TUNED"
    clf = DigitClassifier.from_pretrained(args.classifier)
    ref = digit_features(clf, split.train_x)
    x, labels = split.test_x[:args.n], split.test_y[:args.n]
    rows, panels = evaluate(x, labels, clf, ref, RD.gaussian_prior(split.train_x), args.seed,
                            not args.no_label_rows)
    for task, fig in panels.items():
        save_figure(fig, args.figures / f"restoration_{task}.png")
    hparams = {" ".join(k): {kk: v for kk, v in RD.hparams_for(*k).items()}
               for task, methods in TASK_METHODS.items() for k in itertools.product([task], methods, RD.MODELS)}
    meta = {"n": args.n, "n_train": len(split.train_y), "tune_note": tune_note, "hparams": hparams,
            "student": str(Path(RD.STUDENT_DIR).resolve().relative_to(ROOT)
                           if Path(RD.STUDENT_DIR).resolve().is_relative_to(ROOT) else RD.STUDENT_DIR),
            "total_seconds": time.perf_counter() - start,
            "command": shlex.join(["python", "-m", "benchmarks.restore_digits", *(sys.argv[1:] if argv is None
                                                                                  else argv)])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with_extension(args.out, ".json").write_text(json.dumps({"rows": [asdict(r) for r in rows], **meta}, indent=2,
                                                            default=str) + "\n")
    with_extension(args.out, ".md").write_text(markdown(rows, meta))
    print(f"total {meta['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
