"""Controllable generation on the digits (MPGD's claim): the *unconditional* digits model (null label) steered
toward a requested class by the bundled digit classifier's −log p(class | x̂₀), training-free.

Methods, all on one DDIM-type sampler of ``soundctm.core.restoration`` (η = 1: ancestral steps): DPS with the
teacher (the gradient taken through the network), MPGD with the teacher (a gradient step on x̂₀ = D(x, σ) only),
MPGD with the CTM student's jump G(x, σ, σ_min) as x̂₀; the unguided model (chance ≈ 10 %) and the class-conditional
teacher as references. Success is read by a *judge*: a classifier trained apart (another seed, an MLP instead of
the guide's CNN, ``soundctm/pretrained/digits/judge``), so that guidance cannot fool its own referee. Fréchet
distances on the guide's and on the judge's penultimate features, samples vs the held-out real digits of the
requested classes. Guidance scales (and MPGD's gradient steps per x̂₀) are tuned on another noise seed (judge
success, ties to the lower FD) before the measured run.

    python -m benchmarks.guided_digits
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from recipes.train_image import initial_noise, student_jump, teacher_denoiser
from soundctm.cli_errors import CliError, HelpFormatter, Parser, report
from soundctm.core import restoration as R
from soundctm.core import schedule
from soundctm.data.digits import NUM_CLASSES, load_digit_split
from soundctm.fileio import with_extension
from soundctm.metrics.digits import DigitClassifier, classifier_accuracy, digit_features
from soundctm.metrics.frechet import frechet_distance_of_embeddings
from soundctm.nn.image import ImageUNet

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "soundctm/pretrained/digits"
PROG = "guided_digits"
# tuning grids: DPS's ζ; MPGD's step size α on x̂₀ × gradient steps per x̂₀
DPS_SCALES = (0.3, 1.0, 3.0, 10.0)
MPGD_SCALES = (0.1, 0.3, 1.0, 3.0)
MPGD_GRAD_STEPS = (1, 4)


@dataclass(frozen=True)
class Method:
    """One row: ``kind`` ∈ unguided, conditional, dps, mpgd; ``provider`` teacher (D) or student (CTM jump)."""

    kind: str
    provider: str
    steps: int
    scale: float = 0.0
    n_grad: int = 1

    @property
    def name(self) -> str:
        return {"unguided": "unguided (null label)", "conditional": "class-conditional teacher (reference)",
                "dps": "DPS, teacher", "mpgd": "MPGD, teacher" if self.provider == "teacher"
                else "MPGD, CTM jump as x̂₀"}[self.kind]

    @property
    def guided(self) -> bool:
        return self.kind in ("dps", "mpgd")


@dataclass
class Row:
    method: str
    kind: str
    provider: str
    steps: int
    nfe: int
    backprop_through_net: bool
    scale: float | None
    n_grad: int | None
    success: float  # the judge's top-1 equals the requested class
    guide_success: float | None  # the guiding classifier's top-1 equals the requested class
    fd_classifier: float
    fd_judge: float
    seconds: float  # wall time, the fastest of the repeats
    cpu_seconds: float  # this process's CPU time (one thread: what contention on the shared machine cannot inflate)


@dataclass(frozen=True)
class Models:
    teacher: ImageUNet
    student: ImageUNet
    classifier: DigitClassifier
    judge: DigitClassifier


def load_models(teacher: Path, student: Path, classifier: Path, judge: Path) -> Models:
    return Models(ImageUNet.from_pretrained(teacher), ImageUNet.from_pretrained(student),
                  DigitClassifier.from_pretrained(classifier), DigitClassifier.from_pretrained(judge))


def sigmas_for(method: Method) -> torch.Tensor:
    """Teacher: the Karras grid of ``steps`` points and 0 (``steps`` evaluations). Student: ``steps`` jumps from
    σ_max, each x̂₀ = G(x, σ_i, σ_min), the last one landing at 0."""
    if method.provider == "teacher":
        return schedule.append_zero(schedule.karras_sigmas(method.steps))
    return schedule.append_zero(schedule.karras_sigmas(method.steps + 1)[:-1])


def class_loss(classifier: DigitClassifier, labels: torch.Tensor):
    """The guidance loss −log p(label | x̂₀) ``[B]`` under the guiding classifier."""
    return lambda x0: F.cross_entropy(classifier(x0), labels, reduction="none")


def generate(models: Models, method: Method, x_T: torch.Tensor, labels: torch.Tensor, eta: float,
             seed: int) -> torch.Tensor:
    """Samples ``[B, 1, S, S]`` of one method from the noise ``x_T`` toward the classes ``labels``."""
    g = torch.Generator().manual_seed(seed)
    sigmas = sigmas_for(method)
    null = models.teacher.null_labels(len(x_T))
    if method.provider == "teacher":
        x0_hat = R.denoiser_estimate(teacher_denoiser(models.teacher))
    else:
        x0_hat = R.jump_estimate(student_jump(models.student), schedule.SIGMA_MIN)
    loss = class_loss(models.classifier, labels)
    if method.kind == "dps":
        return R.sample_dps(x0_hat, x_T, sigmas, loss, method.scale, eta, generator=g, labels=null)
    # unguided and class-conditional: the same sampler with no guided step
    guide_from = 0 if method.kind == "mpgd" else len(sigmas)
    cond = labels if method.kind == "conditional" else null
    return R.sample_mpgd(x0_hat, x_T, sigmas, loss, method.scale, eta, method.n_grad, guide_from=guide_from,
                         generator=g, labels=cond)


@dataclass(frozen=True)
class Reference:
    """Held-out real digits of the requested classes, as features of the guide and of the judge."""

    classifier: torch.Tensor
    judge: torch.Tensor


def reference(models: Models, split, classes: list[int]) -> Reference:
    keep = torch.isin(split.test_y, torch.tensor(classes))
    x = split.test_x[keep]
    return Reference(digit_features(models.classifier, x), digit_features(models.judge, x))


def score(models: Models, ref: Reference, method: Method, x: torch.Tensor, labels: torch.Tensor,
          seconds: float, cpu_seconds: float) -> Row:
    x = x.detach().clamp(-1, 1)
    fd_c = frechet_distance_of_embeddings(digit_features(models.classifier, x), ref.classifier)
    fd_j = frechet_distance_of_embeddings(digit_features(models.judge, x), ref.judge)
    return Row(method.name, method.kind, method.provider, method.steps, method.steps, method.kind == "dps",
               method.scale if method.guided else None, method.n_grad if method.kind == "mpgd" else None,
               classifier_accuracy(models.judge, x, labels), classifier_accuracy(models.classifier, x, labels),
               fd_c, fd_j, seconds, cpu_seconds)


def run_method(models: Models, ref: Reference, method: Method, x_T: torch.Tensor, labels: torch.Tensor,
               eta: float, seed: int, repeats: int = 1) -> tuple[Row, torch.Tensor]:
    """Score one method; its wall time is the fastest of ``repeats`` identical (seeded) runs (a shared CPU)."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        x = generate(models, method, x_T, labels, eta, seed)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return score(models, ref, method, x, labels, min(wall), min(cpu)), x


def requested_labels(classes: list[int], per_class: int) -> torch.Tensor:
    """``per_class`` requests of every class, grouped: ``[len(classes)·per_class]``."""
    return torch.tensor(classes).repeat_interleave(per_class)


def candidates(method: Method) -> list[Method]:
    """The tuning grid of one guided method."""
    if method.kind == "dps":
        return [replace(method, scale=s) for s in DPS_SCALES]
    return [replace(method, scale=s, n_grad=k) for k in MPGD_GRAD_STEPS for s in MPGD_SCALES]


def tune(models: Models, ref: Reference, method: Method, classes: list[int], per_class: int, eta: float,
         seed: int, tolerance: float) -> tuple[Method, list[Row]]:
    """On noise ``seed``: among the candidates within ``tolerance`` of the highest judge success, the one with the
    lowest FD on the guide's features."""
    labels = requested_labels(classes, per_class)
    x_T = initial_noise(len(labels), models.teacher.config, seed)
    tried = [(m, run_method(models, ref, m, x_T, labels, eta, seed)[0]) for m in candidates(method)]
    top = max(r.success for _, r in tried)
    best = min((mr for mr in tried if mr[1].success >= top - tolerance), key=lambda mr: mr[1].fd_classifier)[0]
    return best, [r for _, r in tried]


def plan(teacher_steps: list[int], jumps: list[int], reference_steps: int) -> list[Method]:
    """Every row of the table, guided rows with their scale still untuned."""
    rows = [Method("unguided", "teacher", reference_steps), Method("conditional", "teacher", reference_steps)]
    rows += [Method("dps", "teacher", k) for k in teacher_steps]
    rows += [Method("mpgd", "teacher", k) for k in teacher_steps]
    rows += [Method("mpgd", "student", k) for k in jumps]
    return rows


def real_row(models: Models, ref: Reference, split, classes: list[int], per_class: int) -> Row:
    """The floor: judge accuracy on the held-out digits; FD of ``per_class`` train digits per class to them."""
    keep = torch.isin(split.test_y, torch.tensor(classes))
    train = torch.cat([split.train_x[split.train_y == c][:per_class] for c in classes])
    row = score(models, ref, Method("unguided", "teacher", 0), train, requested_labels(classes, per_class), 0.0, 0.0)
    return replace(row, method="real digits (train vs held-out)", kind="real", provider="data", nfe=0,
                   success=classifier_accuracy(models.judge, split.test_x[keep], split.test_y[keep]),
                   guide_success=classifier_accuracy(models.classifier, split.test_x[keep], split.test_y[keep]))


def matched(rows: list[Row], provider: str, tolerance: float) -> list[dict]:
    """For each DPS row, the fastest MPGD row of ``provider`` whose judge success is at least DPS's minus
    ``tolerance``, and the wall-time ratio (None where no MPGD row gets there)."""
    mpgd = [r for r in rows if r.kind == "mpgd" and r.provider == provider]
    pairs = []
    for d in (r for r in rows if r.kind == "dps"):
        ok = [m for m in mpgd if m.success >= d.success - tolerance]
        m = min(ok, key=lambda r: r.seconds) if ok else None
        pairs.append({"provider": provider, "dps_steps": d.steps, "dps_success": d.success, "dps_seconds": d.seconds,
                      "dps_fd": d.fd_classifier, "mpgd": None if m is None else f"{m.method} {m.steps}",
                      "mpgd_fd": None if m is None else m.fd_classifier,
                      "mpgd_success": None if m is None else m.success,
                      "mpgd_seconds": None if m is None else m.seconds,
                      "speedup": None if m is None else d.seconds / m.seconds,
                      "cpu_speedup": None if m is None else d.cpu_seconds / m.cpu_seconds})
    return pairs


def speedup_verdict(rows: list[Row], tolerance: float) -> tuple[str, list[dict]]:
    """One sentence per x̂₀ provider on MPGD's speed-up over DPS at DPS's best judge success, and the pairs."""
    best = max((r for r in rows if r.kind == "dps"), key=lambda r: r.success)
    sentences, pairs = [], []
    for provider, who in (("teacher", "MPGD with the teacher"), ("student", "MPGD with the CTM jump")):
        these = matched(rows, provider, tolerance)
        pairs += these
        top = next(p for p in these if p["dps_steps"] == best.steps)
        target = (f"DPS's best judge success {best.success:.1%} ({best.steps} steps, {best.seconds:.2f} s, "
                  f"matched within {tolerance:.0%})")
        if top["speedup"] is None:
            sentences.append(f"{who}: **no** speed-up: none of its rows reaches {target}.")
        else:
            holds = "**holds**" if top["speedup"] > 1 else "does **not** hold"
            sentences.append(f"{who}: the speed-up {holds}: {target} is reached by {top['mpgd']} "
                             f"({top['mpgd_success']:.1%}, {top['mpgd_seconds']:.2f} s), {top['speedup']:.1f}× DPS's "
                             f"speed in wall time ({top['cpu_speedup']:.1f}× in CPU time), at FD (guide) "
                             f"{top['mpgd_fd']:.2f} against DPS's {top['dps_fd']:.2f}.")
    return " ".join(sentences), pairs


def evaluate(models: Models, split, classes: list[int], per_class: int, tune_per_class: int, teacher_steps: list[int],
             jumps: list[int], reference_steps: int, eta: float, seed: int, tune_seed: int, tolerance: float = 0.02,
             repeats: int = 1):
    """(rows, tuning records, samples per method) of the whole benchmark."""
    ref = reference(models, split, classes)
    labels = requested_labels(classes, per_class)
    x_T = initial_noise(len(labels), models.teacher.config, seed)
    rows, tuning, samples = [real_row(models, ref, split, classes, per_class)], [], {}
    for method in plan(teacher_steps, jumps, reference_steps):
        if method.guided:
            method, tried = tune(models, ref, method, classes, tune_per_class, eta, tune_seed, tolerance)
            chosen = next(r for r in tried if (r.scale, r.n_grad) == (method.scale, method.n_grad if
                                                                       method.kind == "mpgd" else None))
            tuning.append({"method": method.name, "steps": method.steps, "chosen_scale": method.scale,
                           "chosen_n_grad": method.n_grad, "chosen_success": chosen.success,
                           "tried": [asdict(r) for r in tried]})
        row, x = run_method(models, ref, method, x_T, labels, eta, seed, repeats)
        rows.append(row)
        samples[(method.kind, method.provider, method.steps)] = x
    return rows, tuning, samples


def save_figure(samples: dict, rows: list[Row], split, classes: list[int], per_class: int, path: Path,
                columns: list[tuple[str, str, int]], shown: int = 3) -> None:
    """One PNG: rows = requested class, one panel per method with ``shown`` samples per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.digits import tile

    shown = min(shown, per_class)
    pick = torch.cat([torch.arange(shown) + i * per_class for i in range(len(classes))])
    real = torch.cat([split.test_x[split.test_y == c][:shown] for c in classes])
    panels = [("real (held-out)", real)]
    names = {(r.kind, r.provider, r.steps): r for r in rows}
    for key in columns:
        r = names[key]
        label = {"unguided": "unguided", "conditional": "class-cond.", "dps": "DPS"}.get(r.kind, "MPGD")
        unit = ("jump" if r.provider == "student" else "step") + ("s" if r.steps > 1 else "")
        extra = " CTM" if r.provider == "student" else ""
        panels.append((f"{label}{extra}\n{r.steps} {unit}\njudge {r.success:.0%}", samples[key][pick]))
    fig, axes = plt.subplots(1, len(panels), figsize=(1.3 * len(panels), 0.45 * len(classes) + 0.9))
    for ax, (title, images) in zip(axes, panels):
        ax.imshow(tile(images, len(classes), shown, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_yticks([i * 9 + 3.5 for i in range(len(classes))], [str(c) for c in classes], fontsize=7)
    axes[0].set_ylabel("requested class", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


def markdown(rows: list[Row], verdict: str, pairs: list[dict], tuning: list[dict], meta: dict) -> str:
    lines = ["# Guided digits: controllable generation by a classifier, training-free (DPS vs MPGD)", "",
             f"Command: `{meta['command']}`", "",
             "The unconditional digits model (null label) steered toward a requested class by the bundled "
             "classifier's −log p(class | x̂₀) (CNN, seed 0, held-out accuracy "
             f"{meta['classifier_accuracy']:.3f}). **Success** = the *judge* "
             "(`soundctm/pretrained/digits/judge`: an MLP, seed 1, trained apart; held-out accuracy "
             f"{meta['judge_accuracy']:.3f}) reads the requested class; *guide* = the guiding classifier reads it "
             f"(what guidance optimises, and can fool). {meta['n_samples']} samples per row ({meta['per_class']} "
             f"per class × classes {meta['classes']}), one shared noise seed {meta['seed']}; ancestral steps "
             f"η = {meta['eta']}. FD = Fréchet distance of penultimate features (the guide's / the judge's) to the "
             f"{meta['n_reference']} held-out real digits of those classes. NFE = network evaluations (DPS also "
             "backpropagates through each). Wall time: the fastest of "
             f"{meta['repeats']} identical runs, one CPU thread on a shared 2-core machine.", "",
             "| method | steps | NFE | backprop | scale | grad steps | success (judge) ↑ | guide ↑ | FD guide ↓ | "
             "FD judge ↓ | wall s | CPU s |",
             "|---|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        scale = "" if r.scale is None else f"{r.scale:g}"
        grad = "" if r.n_grad is None else str(r.n_grad)
        guide = "" if r.guide_success is None else f"{r.guide_success:.1%}"
        lines.append(f"| {r.method} | {r.steps or ''} | {r.nfe} | {'yes' if r.backprop_through_net else ''} | "
                     f"{scale} | {grad} | {r.success:.1%} | {guide} | {r.fd_classifier:.2f} | {r.fd_judge:.2f} | "
                     f"{r.seconds:.2f} | {r.cpu_seconds:.2f} |")
    lines += ["", f"**Speed-up at matched success.** {verdict}", "",
              "| DPS steps | DPS success | DPS s | fastest MPGD row within tolerance | its success | its s | "
              "speed-up (wall) | speed-up (CPU) | FD guide: DPS → MPGD |",
              "|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for p in pairs:
        if p["mpgd"] is None:
            lines.append(f"| {p['dps_steps']} | {p['dps_success']:.1%} | {p['dps_seconds']:.2f} | none | | | | | |")
        else:
            lines.append(f"| {p['dps_steps']} | {p['dps_success']:.1%} | {p['dps_seconds']:.2f} | {p['mpgd']} | "
                         f"{p['mpgd_success']:.1%} | {p['mpgd_seconds']:.2f} | {p['speedup']:.1f}× | "
                         f"{p['cpu_speedup']:.1f}× | {p['dps_fd']:.2f} → {p['mpgd_fd']:.2f} |")
    se = (0.95 * 0.05 / meta["n_samples"]) ** 0.5
    lines += ["", f"Matched = MPGD's judge success ≥ DPS's − {meta['tolerance']:.0%} (one binomial standard error at "
              f"95 % success and {meta['n_samples']} samples: {se:.1%}).", "",
              f"**Tuning** (noise seed {meta['tune_seed']}, {meta['tune_per_class']} per class: among the settings "
              f"within {meta['tolerance']:.0%} of the best judge success, the lowest FD on the guide's features): "
              f"DPS ζ ∈ {list(DPS_SCALES)}; MPGD α ∈ {list(MPGD_SCALES)} × "
              f"gradient steps per x̂₀ ∈ {list(MPGD_GRAD_STEPS)}. Chosen:", ""]
    for t in tuning:
        grad = f", grad steps {t['chosen_n_grad']}" if t["method"].startswith("MPGD") else ""
        lines.append(f"- {t['method']} {t['steps']}: scale {t['chosen_scale']:g}{grad} "
                     f"(tuning success {t['chosen_success']:.0%})")
    lines += ["", "MPGD's last step returns the guided x̂₀ itself (σ_next = 0), so its final gradient step is not "
              "projected back by the network; with one CTM jump that is all the guidance there is.",
              "", "The bundled CTM student was distilled from the teacher with real labels only (no label dropout in "
              "CTM training), so its null label, which these rows use, lies off the trajectories it learned.", "",
              f"Figure: [{meta['figure']}]({meta['figure_link']}) (rows = requested class; per panel three "
              "samples of each class, the same noise in every panel).",
              f"Total benchmark time {meta['total_seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def int_list(text: str, name: str, low: int, high: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CliError(f"{name} expects comma-separated integers, got {text!r}") from None
    if not values or any(not low <= v <= high for v in values) or len(set(values)) != len(values):
        raise CliError(f"{name} expects distinct integers in [{low}, {high}], got {text!r}")
    return values


def parse_args(argv: list[str]):
    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--teacher", type=Path, default=PRETRAINED / "teacher")
    p.add_argument("--student", type=Path, default=PRETRAINED / "ctm_l2")
    p.add_argument("--classifier", type=Path, default=PRETRAINED / "classifier", help="the guide")
    p.add_argument("--judge", type=Path, default=PRETRAINED / "judge", help="the referee (trained apart)")
    p.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9", help="requested classes")
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--tune-per-class", type=int, default=10)
    p.add_argument("--teacher-steps", default="5,10,20,50", help="DPS and MPGD with the teacher")
    p.add_argument("--jumps", default="1,2,4", help="MPGD with the CTM jump as x̂₀")
    p.add_argument("--reference-steps", type=int, default=20, help="steps of the unguided and conditional rows")
    p.add_argument("--eta", type=float, default=1.0, help="η of every step (0: DDIM ODE, 1: ancestral)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tune-seed", type=int, default=1)
    p.add_argument("--tolerance", type=float, default=0.02, help="success margin of 'matched success' and tuning")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row (the fastest is reported)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/guided_digits")
    p.add_argument("--figure", type=Path, default=ROOT / "docs/guided_digits.png")
    args = p.parse_args(argv)
    args.classes = int_list(args.classes, "--classes", 0, NUM_CLASSES - 1)
    args.teacher_steps = int_list(args.teacher_steps, "--teacher-steps", 1, 1000)
    args.jumps = int_list(args.jumps, "--jumps", 1, 100)
    if min(args.per_class, args.tune_per_class, args.reference_steps, args.repeats) < 1:
        raise CliError("--per-class, --tune-per-class, --reference-steps and --repeats must be >= 1")
    if not 0.0 <= args.eta <= 1.0:
        raise CliError(f"--eta must lie in [0, 1], got {args.eta}")
    if args.seed == args.tune_seed:
        raise CliError("--tune-seed must differ from --seed (scales are tuned on other noise)")
    if not 0.0 <= args.tolerance < 1.0:
        raise CliError(f"--tolerance must lie in [0, 1), got {args.tolerance}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
        models = load_models(args.teacher, args.student, args.classifier, args.judge)
    except (CliError, ValueError) as err:
        return report(PROG, err)
    torch.set_num_threads(1)
    start = time.perf_counter()
    split = load_digit_split()
    rows, tuning, samples = evaluate(models, split, args.classes, args.per_class, args.tune_per_class,
                                     args.teacher_steps, args.jumps, args.reference_steps, args.eta, args.seed,
                                     args.tune_seed, args.tolerance, args.repeats)
    verdict, pairs = speedup_verdict(rows, args.tolerance)
    mid = sorted(args.teacher_steps, key=lambda k: abs(k - args.reference_steps))[0]
    columns = [("unguided", "teacher", args.reference_steps), ("conditional", "teacher", args.reference_steps),
               ("dps", "teacher", mid), ("mpgd", "teacher", mid), *(("mpgd", "student", k) for k in args.jumps)]
    save_figure(samples, rows, split, args.classes, args.per_class, args.figure, columns)
    meta = {"command": shlex.join(["python", "-m", "benchmarks.guided_digits", *argv]),
            "classifier_accuracy": classifier_accuracy(models.classifier, split.test_x, split.test_y),
            "judge_accuracy": classifier_accuracy(models.judge, split.test_x, split.test_y),
            "judge_config": asdict(models.judge.config), "classifier_config": asdict(models.classifier.config),
            "classes": args.classes, "per_class": args.per_class, "n_samples": len(args.classes) * args.per_class,
            "n_reference": int(torch.isin(split.test_y, torch.tensor(args.classes)).sum()),
            "tune_per_class": args.tune_per_class, "seed": args.seed, "tune_seed": args.tune_seed, "eta": args.eta,
            "tolerance": args.tolerance, "repeats": args.repeats, "total_seconds": time.perf_counter() - start,
            "figure": str(args.figure.relative_to(ROOT)) if args.figure.is_relative_to(ROOT) else str(args.figure),
            "figure_link": os.path.relpath(args.figure.resolve(), args.out.resolve().parent)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with_extension(args.out, ".json").write_text(json.dumps(
        {**meta, "rows": [asdict(r) for r in rows], "verdict": verdict, "matched": pairs, "tuning": tuning},
        indent=2) + "\n")
    with_extension(args.out, ".md").write_text(markdown(rows, verdict, pairs, tuning, meta))
    for r in rows:
        print(f"{r.method:40s} {r.steps:3d}  success {r.success:6.1%}  guide {r.guide_success or 0:6.1%}  "
              f"FD {r.fd_classifier:7.2f} / {r.fd_judge:7.2f}  {r.seconds:6.2f} s")
    print(verdict)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
