"""Training-free restoration of held-out 8×8 digits with the bundled digits teacher or its CTM student.

A held-out digit x is degraded to y = A x + σ_y·n and restored by one of the core's guided samplers
(``soundctm.core.restoration``) with an unconditional prior (the null label) unless ``--label-cond``:

- tasks: ``inpaint`` (bottom half missing), ``sr`` (4×4 block means → 8×8), ``deblur`` (Gaussian blur, width 1 px),
  ``deblur_blind`` (the same blur, width unknown: GibbsDDRM estimates it from a wrong start), ``denoise`` (σ_y = 0.2);
- methods: ``dps``, ``mpgd``, ``ddrm``, ``gibbs`` (blind deblurring only), ``replace`` (inpainting only);
- models: ``teacher`` (clean estimate x̂₀ = D(x, σ), ``--steps`` network evaluations) or ``student`` (x̂₀ = the CTM
  jump G(x, σ, σ_min), ``--steps`` jumps).

    python -m recipes.restore_digits --task inpaint --method ddrm --model student --steps 2 --out grid.png

The PNG shows the truth, the degraded input and the restoration, one row each. ``restore`` is the python API.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F

from recipes.train_image import student_jump, teacher_denoiser
from soundctm.core import operators as O
from soundctm.core import restoration as R
from soundctm.core import schedule
from soundctm.data.digits import load_digit_split
from soundctm.nn.image import ImageUNet

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "soundctm/pretrained/digits"
TASKS = ("inpaint", "sr", "deblur", "deblur_blind", "denoise")
METHODS = ("dps", "mpgd", "ddrm", "gibbs", "replace")
MODELS = ("teacher", "student")
SHAPE = (1, 8, 8)
SIGMA_Y = {"inpaint": 0.05, "sr": 0.05, "deblur": 0.05, "deblur_blind": 0.05, "denoise": 0.2}
BLUR_WIDTH = 1.0  # the true blur std in pixels (deblur, deblur_blind)
BLIND_START = 2.0  # GibbsDDRM's (wrong) starting width
WIDTH_BOUNDS = (0.3, 3.0)

# Defaults per method and model; TUNED overrides them per task (values chosen by PSNR on held-out digits that the
# benchmark does not report: python -m benchmarks.restore_digits --tune). DPS: ζ multiplies ∇‖y − A x̂₀‖. MPGD:
# n_grad steps on ‖y − A x̂₀‖² of size step/(2‖A‖²) (step 1 solves a selection in one step). η: fresh-noise share
# of each step (DDRM's η). sigma_last: the last noise level before 0 (the student's grid; the teacher's is σ_min).
HPARAMS = {
    "dps": {"zeta": 1.0, "eta": 1.0},
    "mpgd": {"step": 0.5, "n_grad": 1, "eta": 1.0},
    "ddrm": {"eta": 0.85, "eta_b": 1.0},
    "gibbs": {"eta": 0.85, "eta_b": 1.0, "phi_lr": 1e-4, "phi_steps": 5, "phi_from": 0.3},
    "replace": {"eta": 1.0},
}
TUNED: dict[tuple[str, str, str], dict] = {
    ("inpaint", "replace", "teacher"): {"eta": 0.5},
    ("inpaint", "replace", "student"): {"eta": 1.0, "sigma_last": 0.3},
    ("inpaint", "dps", "teacher"): {"zeta": 1.0, "eta": 0.0},
    ("inpaint", "dps", "student"): {"zeta": 30.0, "eta": 1.0, "sigma_last": 0.002},
    ("inpaint", "mpgd", "teacher"): {"step": 1.5, "n_grad": 1, "eta": 0.0},
    ("inpaint", "mpgd", "student"): {"step": 1.5, "n_grad": 5, "eta": 1.0, "sigma_last": 0.3},
    ("inpaint", "ddrm", "teacher"): {"eta": 1.0},
    ("inpaint", "ddrm", "student"): {"eta": 1.0, "sigma_last": 0.1},
    ("sr", "dps", "teacher"): {"zeta": 3.0, "eta": 0.0},
    ("sr", "dps", "student"): {"zeta": 30.0, "eta": 1.0, "sigma_last": 0.002},
    ("sr", "mpgd", "teacher"): {"step": 1.5, "n_grad": 1, "eta": 0.0},
    ("sr", "mpgd", "student"): {"step": 1.5, "n_grad": 1, "eta": 1.0, "sigma_last": 0.3},
    ("sr", "ddrm", "teacher"): {"eta": 1.0},
    ("sr", "ddrm", "student"): {"eta": 1.0, "sigma_last": 0.1},
    ("deblur", "dps", "teacher"): {"zeta": 3.0, "eta": 1.0},
    ("deblur", "dps", "student"): {"zeta": 30.0, "eta": 1.0, "sigma_last": 0.002},
    ("deblur", "mpgd", "teacher"): {"step": 1.0, "n_grad": 5, "eta": 1.0},
    ("deblur", "mpgd", "student"): {"step": 1.5, "n_grad": 5, "eta": 1.0, "sigma_last": 0.3},
    ("deblur", "ddrm", "teacher"): {"eta": 0.85},
    ("deblur", "ddrm", "student"): {"eta": 0.5, "sigma_last": 0.3},
    ("deblur_blind", "ddrm", "teacher"): {"eta": 0.85},
    ("deblur_blind", "ddrm", "student"): {"eta": 0.5, "sigma_last": 1.0},
    ("deblur_blind", "gibbs", "teacher"): {"phi_lr": 0.0001, "phi_steps": 5},
    ("deblur_blind", "gibbs", "student"): {"phi_lr": 0.0003, "phi_steps": 20, "sigma_last": 0.002},
    ("denoise", "dps", "teacher"): {"zeta": 1.0, "eta": 1.0},
    ("denoise", "dps", "student"): {"zeta": 30.0, "eta": 1.0, "sigma_last": 0.002},
    ("denoise", "mpgd", "teacher"): {"step": 0.1, "n_grad": 1, "eta": 0.0},
    ("denoise", "mpgd", "student"): {"step": 0.5, "n_grad": 5, "eta": 1.0, "sigma_last": 1.0},
    ("denoise", "ddrm", "teacher"): {"eta": 0.5},
    ("denoise", "ddrm", "student"): {"eta": 0.5, "sigma_last": 0.3},
}


def hparams_for(task: str, method: str, model: str) -> dict:
    """The defaults of ``method`` with the tuned values of (task, method, model) on top."""
    return {"sigma_last": schedule.SIGMA_MIN, **HPARAMS[method], **TUNED.get((task, method, model), {})}


def check_combination(task: str, method: str, model: str, steps: int) -> None:
    """ValueError naming the bad argument."""
    for name, value, allowed in (("task", task, TASKS), ("method", method, METHODS), ("model", model, MODELS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if method == "replace" and task != "inpaint":
        raise ValueError("method 'replace' needs a mask: task 'inpaint' only")
    if method == "gibbs" and task != "deblur_blind":
        raise ValueError("method 'gibbs' estimates the blur width: task 'deblur_blind' only")
    if task == "deblur_blind" and method not in ("gibbs", "ddrm"):
        raise ValueError("task 'deblur_blind' runs 'gibbs' (or 'ddrm' at the wrong start width)")


# ---------------------------------------------------------------- degradations

@dataclass
class Problem:
    """A degraded batch: y = A x + σ_y·n with the true operator; ``op`` is what the restorer is told (for blind
    deblurring the blur at the wrong start width); ``shown`` is y drawn as ``[B, 1, 8, 8]`` images."""

    task: str
    y: torch.Tensor
    op: O.LinearOperator
    sigma_y: float
    shown: torch.Tensor
    mask: torch.Tensor | None = None
    true_width: float | None = None


def inpaint_mask() -> torch.Tensor:
    """Observed pixels ``[1, 8, 8]``: the top half."""
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[:, : SHAPE[1] // 2] = True
    return mask


def true_operator(task: str) -> O.LinearOperator:
    if task == "inpaint":
        return O.select_operator(inpaint_mask().flatten(), SHAPE)
    if task == "sr":
        return O.downsample_operator(SHAPE, 2)
    if task in ("deblur", "deblur_blind"):
        return O.blur_operator(SHAPE, BLUR_WIDTH)
    return O.LinearOperator(torch.eye(64), SHAPE)


def degrade(task: str, x: torch.Tensor, seed: int = 0) -> Problem:
    """Measure clean digits ``x [B, 1, 8, 8]`` for ``task`` with seeded noise."""
    op, sigma_y = true_operator(task), SIGMA_Y[task]
    clean = op(x)
    y = clean + sigma_y * torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed + 12345))
    mask = None
    if task == "inpaint":
        mask = inpaint_mask()
        shown = torch.zeros_like(x).flatten(1)
        shown[:, mask.flatten()] = y
        shown = shown.reshape_as(x)
    elif task == "sr":
        shown = F.interpolate(y.reshape(-1, 1, 4, 4), scale_factor=2, mode="nearest")
    else:
        shown = y.reshape_as(x)
    if task == "deblur_blind":
        return Problem(task, y, O.blur_operator(SHAPE, BLIND_START), sigma_y, shown, true_width=BLUR_WIDTH)
    return Problem(task, y, op, sigma_y, shown, mask, BLUR_WIDTH if task == "deblur" else None)


# ---------------------------------------------------------------- models and schedules

STUDENT_DIR = PRETRAINED / "ctm_l2"  # the student "student" names (benchmarks/restore_digits.py --student)


@cache
def load_net(model: str) -> ImageUNet:
    """The bundled teacher, or the CTM student in ``STUDENT_DIR`` (set it before the first load)."""
    return ImageUNet.from_pretrained(PRETRAINED / "teacher" if model == "teacher" else STUDENT_DIR)


def clean_estimate(model: str):
    """x̂₀(x, σ, labels=…): the teacher's denoiser or the student's jump to σ_min."""
    net = load_net(model)
    return R.denoiser_estimate(teacher_denoiser(net)) if model == "teacher" else R.jump_estimate(student_jump(net))


def restoration_sigmas(steps: int, sigma_last: float = schedule.SIGMA_MIN) -> torch.Tensor:
    """``steps`` Karras noise levels from σ_max down to ``sigma_last``, then 0: one network evaluation per level."""
    return schedule.append_zero(schedule.karras_sigmas(steps, sigma_last))


def blur_matrix(phi: torch.Tensor) -> torch.Tensor:
    """GibbsDDRM's operator family: the Gaussian blur of width φ₀."""
    return O.gaussian_blur_matrix(SHAPE, phi[0])


# ---------------------------------------------------------------- restoration

@dataclass
class Restored:
    x: torch.Tensor
    problem: Problem
    nfe: int
    width: torch.Tensor | None = None  # GibbsDDRM's per-sample blur width estimate
    hparams: dict = field(default_factory=dict)


def restore(task: str, method: str, model: str, steps: int, x: torch.Tensor, labels: torch.Tensor | None = None,
            seed: int = 0, problem: Problem | None = None, hparams: dict | None = None) -> Restored:
    """Degrade held-out digits ``x [B, 1, 8, 8]`` for ``task`` (or take ``problem``) and restore them with ``method``
    on ``model`` in ``steps`` network evaluations; ``labels`` (``[B]``) condition the prior, None = unconditional."""
    check_combination(task, method, model, steps)
    hp = {**hparams_for(task, method, model), **(hparams or {})}
    p = problem if problem is not None else degrade(task, x, seed)
    net = load_net(model)
    cond = {"labels": net.null_labels(len(x)) if labels is None else labels}
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(x.shape, generator=g) * schedule.SIGMA_MAX
    sigmas, x0_hat = restoration_sigmas(steps, hp["sigma_last"]), clean_estimate(model)
    width = None
    if method == "ddrm":
        out = R.sample_ddrm(x0_hat, x_T, sigmas, p.y, p.op, p.sigma_y, hp["eta"], hp["eta_b"], g, **cond)
    elif method == "gibbs":
        res = R.sample_gibbs_ddrm(x0_hat, x_T, sigmas, p.y, blur_matrix, torch.full((len(x), 1), BLIND_START),
                                  p.sigma_y, hp["eta"], hp["eta_b"], hp["phi_lr"], hp["phi_steps"], hp["phi_from"],
                                  bounds=WIDTH_BOUNDS, generator=g, **cond)
        out, width = res.x, res.phi[:, 0]
    elif method == "dps":
        loss = O.measurement_loss(p.y, p.op, squared=False)
        out = R.sample_dps(x0_hat, x_T, sigmas, loss, hp["zeta"], hp["eta"], g, **cond)
    elif method == "mpgd":
        loss = O.measurement_loss(p.y, p.op)
        step = hp["step"] / (2 * float(p.op.s.max()) ** 2)  # step = 1: one step solves a selection exactly
        out = R.sample_mpgd(x0_hat, x_T, sigmas, loss, step, hp["eta"], hp["n_grad"], generator=g, **cond)
    else:
        known = p.op.adjoint(p.y)  # observed pixels in place, zeros elsewhere
        out = R.sample_replacement(x0_hat, x_T, sigmas, known, p.mask[None], hp["eta"], g, **cond)
    return Restored(out.detach(), p, steps, width, hp)


# ---------------------------------------------------------------- baselines (no network)

def gaussian_prior(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean ``[64]`` and covariance ``[64, 64]`` of training digits (the Wiener filter's prior)."""
    flat = x.flatten(1)
    return flat.mean(0), torch.cov(flat.T)


def wiener(p: Problem, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """The linear MMSE (Wiener) estimate under a Gaussian prior: μ + Σ Aᵀ (A Σ Aᵀ + σ_y² I)⁻¹ (y − A μ)."""
    A = p.op.matrix
    gain = cov @ A.T @ torch.linalg.inv(A @ cov @ A.T + p.sigma_y**2 * torch.eye(len(A)))
    return (mean + (p.y - mean @ A.T) @ gain.T).reshape(-1, *SHAPE)


def baselines(p: Problem, mean: torch.Tensor, cov: torch.Tensor) -> dict[str, torch.Tensor]:
    """The plain per-task baseline, then the Wiener filter: inpaint: the observed pixels' mean fills the hole; sr:
    bicubic; deblur and denoise: Wiener alone (blind: at the wrong start width the restorer is told)."""
    out = {}
    if p.task == "inpaint":
        fill = p.y.mean(1)[:, None, None, None].expand_as(p.shown)
        out["mean fill"] = torch.where(p.mask, p.shown, fill)
    elif p.task == "sr":
        out["bicubic"] = F.interpolate(p.y.reshape(-1, 1, 4, 4), scale_factor=2, mode="bicubic",
                                       align_corners=False).clamp(-1, 1)
    out["Wiener (start width)" if p.task == "deblur_blind" else "Wiener"] = wiener(p, mean, cov)
    return out


# ---------------------------------------------------------------- figures and command line

def save_rows(rows: list[torch.Tensor], path: Path, zoom: int = 4) -> None:
    """One image row per tensor ``[n, 1, 8, 8]`` (in [−1, 1]) as a grey PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.digits import tile

    n = min(len(r) for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, tile(torch.cat([r[:n] for r in rows]), len(rows), n, zoom), cmap="gray", vmin=0, vmax=1)


def held_out(n: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` held-out digits (never seen in training) from position ``offset``, with their labels."""
    split = load_digit_split()
    if offset + n > len(split.test_y):
        raise ValueError(f"only {len(split.test_y)} held-out digits, asked for {n} from {offset}")
    return split.test_x[offset:offset + n], split.test_y[offset:offset + n]


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line ``restore_digits: …`` and exit status 2."""

    def error(self, message: str):
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="restore_digits", description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--steps", type=int, required=True, help="network evaluations (teacher) or jumps (student)")
    p.add_argument("--n", type=int, default=16, help="held-out digits to restore")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label-cond", action="store_true", help="condition the prior on the true class")
    p.add_argument("--out", type=Path, required=True, help="PNG: truth, degraded, restored rows")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        if args.n < 1:
            raise ValueError(f"--n must be >= 1, got {args.n}")
        check_combination(args.task, args.method, args.model, args.steps)
        x, labels = held_out(args.n)
    except ValueError as err:
        print(f"restore_digits: {err}", file=sys.stderr)
        return 2
    out = restore(args.task, args.method, args.model, args.steps, x, labels if args.label_cond else None, args.seed)
    save_rows([x, out.problem.shown, out.x], args.out)
    psnr = psnr_db(out.x, x).mean()
    extra = "" if out.width is None else f", width {out.width.mean():.2f} (truth {BLUR_WIDTH})"
    print(f"{args.task} {args.method} {args.model} {args.steps} steps: PSNR {psnr:.2f} dB on {args.n} digits{extra}"
          f" -> {args.out}")
    return 0


def psnr_db(x: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """PSNR per image ``[B]`` in dB for images in [−1, 1] (peak-to-peak 2), after clamping to that range."""
    mse = (x.clamp(-1, 1) - truth).flatten(1).pow(2).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp(min=1e-10))


if __name__ == "__main__":
    sys.exit(main())
