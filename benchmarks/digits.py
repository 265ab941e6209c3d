"""Digits benchmark: Fréchet distance and class accuracy of the EDM teacher (Heun 5/10/20/40 steps) and of CTM
students (1/2/4 steps × γ ∈ {0, 0.5, 1}), with the real held-out-vs-train floor; sample grids as PNGs.

Every method draws as many class-conditional samples as there are held-out digits, with the held-out labels, so
all Fréchet distances (against the classifier features of the train split) share one sample size and bias.

    python -m benchmarks.digits --teacher runs/digits_teacher/model --student l2=runs/digits_ctm/model \\
        --classifier soundctm/pretrained/digits/classifier --out benchmarks/results/digits
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from recipes.train_image import ctm_samples, initial_noise, teacher_samples
from soundctm.data.digits import DigitsConfig, load_digit_split
from soundctm.fileio import with_extension
from soundctm.metrics.digits import DigitClassifier, digit_features, score_digits
from soundctm.nn.image import ImageUNet

ROOT = Path(__file__).resolve().parents[1]
TEACHER_STEPS = (5, 10, 20, 40)
CTM_STEPS = (1, 2, 4)
GAMMAS = (0.0, 0.5, 1.0)


@dataclass
class Row:
    method: str
    steps: int
    nfe: int
    gamma: float | None
    frechet: float
    accuracy: float | None
    seconds: float


def read_provenance(model_dir: Path) -> dict:
    path = Path(model_dir) / "provenance.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def data_config(provenance: dict) -> DigitsConfig:
    """The split the teacher was trained on (from its provenance), else the default split."""
    data = provenance.get("data") or {}
    return DigitsConfig(**{k: data[k] for k in ("holdout", "split_seed", "size") if k in data})


def tile(images: torch.Tensor, rows: int = 10, cols: int = 10, zoom: int = 4) -> np.ndarray:
    """``[rows·cols, 1, S, S]`` in [−1, 1] → one grey image ``[rows·(S+1)·zoom, cols·(S+1)·zoom]`` in [0, 1]."""
    x = ((images[:rows * cols, 0].clamp(-1, 1) + 1) / 2).cpu().numpy()
    s = x.shape[-1]
    canvas = np.full((rows * (s + 1), cols * (s + 1)), 0.5)
    for i, img in enumerate(x):
        r, c = divmod(i, cols)
        canvas[r * (s + 1):r * (s + 1) + s, c * (s + 1):c * (s + 1) + s] = img
    return np.kron(canvas, np.ones((zoom, zoom)))


def save_grid(images: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imsave(path, tile(images), cmap="gray", vmin=0, vmax=1)


def grid_labels(rows: int = 10, cols: int = 10) -> torch.Tensor:
    """Row r of a grid shows digit r: ``[rows·cols]``."""
    return torch.arange(rows).repeat_interleave(cols) % 10


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def evaluate(teacher: ImageUNet, students: dict[str, ImageUNet], clf: DigitClassifier, split,
             guidance: float, seed: int) -> list[Row]:
    """All rows: the real floor, the teacher at each Heun step count, every student at each steps × γ."""
    ref = digit_features(clf, split.train_x)
    labels = split.test_y
    x_T = initial_noise(len(labels), teacher.config, seed)
    floor = score_digits(clf, split.test_x, ref, labels)
    rows = [Row("real held-out vs train", 0, 0, None, floor.frechet, floor.accuracy, 0.0)]
    for steps in TEACHER_STEPS:
        x, sec = timed(lambda s=steps: teacher_samples(teacher, x_T, labels, s, guidance))
        sc = score_digits(clf, x, ref, labels)
        rows.append(Row("teacher Heun", steps, 2 * steps - 1, None, sc.frechet, sc.accuracy, sec))
    for name, student in students.items():
        for steps in CTM_STEPS:
            for gamma in GAMMAS:
                if steps == 1 and gamma > 0:
                    continue  # one jump T → σ_min: γ plays no role
                x, sec = timed(lambda s=steps, g=gamma, m=student: ctm_samples(m, x_T, labels, s, g, seed))
                sc = score_digits(clf, x, ref, labels)
                rows.append(Row(f"CTM ({name})", steps, steps, gamma, sc.frechet, sc.accuracy, sec))
    return rows


def write_grids(teacher: ImageUNet, students: dict[str, ImageUNet], split, guidance: float, seed: int,
                out: Path) -> list[str]:
    """10×10 sample grids (row r = digit r) per method; returns the file names."""
    labels = grid_labels()
    x_T = initial_noise(len(labels), teacher.config, seed + 1)
    real = torch.cat([split.test_x[split.test_y == d][:10] for d in range(10)])
    panels = {"real": real}
    for steps in (5, 40):
        panels[f"teacher_heun{steps}"] = teacher_samples(teacher, x_T, labels, steps, guidance)
    for name, student in students.items():
        panels[f"ctm_{name}_1step"] = ctm_samples(student, x_T, labels, 1, 0.0, seed)
        panels[f"ctm_{name}_2step_g0"] = ctm_samples(student, x_T, labels, 2, 0.0, seed)
        panels[f"ctm_{name}_4step_g1"] = ctm_samples(student, x_T, labels, 4, 1.0, seed)
    names = []
    for key, images in panels.items():
        names.append(f"{out.name}_{key}.png")
        save_grid(images, out.with_name(names[-1]))
    return names


def headline(rows: list[Row]) -> str:
    """One sentence: the 1-step CTM Fréchet distance(s) next to the 40-step teacher's and the real floor."""
    floor = rows[0].frechet
    teacher = next(r.frechet for r in rows if r.method == "teacher Heun" and r.steps == 40)
    ctm = ", ".join(f"{r.method} {r.frechet:.2f}" for r in rows if r.method.startswith("CTM") and r.steps == 1)
    return (f"**1-step CTM vs 40-step teacher (79 NFE):** {ctm} vs {teacher:.2f}; real held-out vs train floor "
            f"{floor:.2f}.")


def markdown(rows: list[Row], train_seconds: dict[str, float], grids: list[str], meta: dict) -> str:
    lines = ["# Digits: EDM teacher vs CTM student (8×8 scikit-learn digits)", "",
             f"Fréchet distance on the penultimate features of the project's digit classifier (held-out accuracy "
             f"{meta['classifier_accuracy']:.3f}), samples vs the {meta['n_train']} train digits; "
             f"{meta['n_samples']} class-conditional samples per method with the held-out labels; class accuracy = "
             f"classifier agrees with the requested label. Teacher CFG scale ω = {meta['guidance']}.", "",
             "| method | steps | NFE | γ | Fréchet ↓ | class acc ↑ | sampling s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        gamma = "" if r.gamma is None else f"{r.gamma:g}"
        acc = "" if r.accuracy is None else f"{r.accuracy:.3f}"
        lines.append(f"| {r.method} | {r.steps} | {r.nfe} | {gamma} | {r.frechet:.2f} | {acc} | {r.seconds:.2f} |")
    lines += ["", headline(rows)]
    teacher_s = train_seconds["teacher"]
    pairs = ", ".join(f"{k} {(teacher_s + v) / 60:.1f} min" for k, v in train_seconds.items() if k != "teacher")
    lines += ["", "Training wall time (one thread, machine shared): " +
              ", ".join(f"{k} {v / 60:.1f} min" for k, v in train_seconds.items()) +
              f"; teacher + student: {pairs}.", "", "Sample grids (row r = digit r): " +
              ", ".join(f"[{g}]({g})" for g in grids), "", f"Command: `{meta['command']}`", "", meta["note"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", type=Path, required=True)
    p.add_argument("--student", action="append", default=[], metavar="NAME=DIR", help="CTM student (repeatable)")
    p.add_argument("--classifier", type=Path, default=ROOT / "soundctm/pretrained/digits/classifier")
    p.add_argument("--guidance", type=float, default=1.0, help="teacher CFG scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/digits")
    p.add_argument("--note", default="", help="a line appended to the markdown (e.g. measured CPU times)")
    args = p.parse_args(argv)
    if any("=" not in s for s in args.student):
        p.error("--student expects NAME=DIR")
    torch.set_num_threads(1)
    teacher = ImageUNet.from_pretrained(args.teacher)
    students = {s.split("=", 1)[0]: ImageUNet.from_pretrained(s.split("=", 1)[1]) for s in args.student}
    clf = DigitClassifier.from_pretrained(args.classifier)
    split = load_digit_split(data_config(read_provenance(args.teacher)))
    rows = evaluate(teacher, students, clf, split, args.guidance, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        grids = write_grids(teacher, students, split, args.guidance, args.seed, args.out)
    train_seconds = {"teacher": read_provenance(args.teacher).get("metrics", {}).get("train_seconds", float("nan"))}
    for s in args.student:
        name, path = s.split("=", 1)
        train_seconds[f"CTM ({name})"] = read_provenance(Path(path)).get("metrics", {}).get("train_seconds",
                                                                                              float("nan"))
    meta = {"classifier_accuracy": rows[0].accuracy, "n_train": len(split.train_y), "n_samples": len(split.test_y),
            "guidance": args.guidance, "note": args.note,
            "command": shlex.join(["python", "-m", "benchmarks.digits", *(argv or sys.argv[1:])]),
            "student_configs": {s.split("=", 1)[0]: read_provenance(Path(s.split("=", 1)[1])).get("config", {})
                                .get("ctm") for s in args.student}}
    with_extension(args.out, ".json").write_text(json.dumps(
        {"rows": [asdict(r) for r in rows], "train_seconds": train_seconds, "grids": grids, **meta}, indent=2) + "\n")
    with_extension(args.out, ".md").write_text(markdown(rows, train_seconds, grids, meta))
    for r in rows:
        print(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
