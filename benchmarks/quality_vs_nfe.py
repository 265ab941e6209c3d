"""Quality vs NFE and wall time on held-out SynthCaps prompts: teacher ODE solvers vs CTM γ-sampling vs the student's
own score, plus preview fidelity (does the N-step result keep what the 1-step preview from the same noise showed?).

For every setting: FD_synth (classifier embeddings of generated vs the prompts' real clips), attribute accuracy
from the SynthCaps classifier (mean over source, pitch, count, sweep, loudness) and from the signal measurements
(``judge``), their agreement, seconds per clip (sampling + VAE + Griffin-Lim; text embeddings cached first) and
real-time factor. A "real clips" row gives the floor: FD between the reference clips and as many other real clips,
and both accuracies on real clips.

Preview fidelity (SoundCTM, Saito et al. 2024, Sec. 4): for the same prompts and seeds (same x_T), the fraction of
prompts whose classifier attributes agree between the 1-step result and the N-step γ-sampled result, and their
embedding distance relative to the distance between results of different prompts. With γ = 0 the N-step sampler
stays on the trajectory the 1-step jump summarised; with γ = 1 every step re-noises and may change the content.

    nice -n 5 .venv/bin/python benchmarks/quality_vs_nfe.py [--model DIR] [--n-prompts 32] [--quick]

Writes ``benchmarks/results/quality_vs_nfe.{md,json,png}`` (``--name`` changes the stem).
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

from soundctm.metrics.frechet import frechet_distance_of_embeddings
from soundctm.metrics.synthcaps_classifier import CORE_ATTRIBUTES, build_synthcaps_embedder, synthcaps_waves
from soundctm.metrics.synthcaps_eval import (
    JUDGE_KEYS,
    accuracy_of_verdicts,
    classifier_verdicts,
    generate_batched,
    judge_verdicts,
    load_prompt_set,
    preview_fidelity,
    verdict_agreement,
)
from soundctm.pipeline import DEFAULT_MODEL, SoundCTM

RESULTS = Path(__file__).resolve().parent / "results"
FULL = {"ctm_steps": (1, 2, 4, 8, 16), "gammas": (0.0, 0.3, 0.6, 1.0), "score_steps": (4, 8, 16),
        "teacher_steps": {"euler": (4, 8, 16, 40), "heun": (2, 4, 8, 20, 40), "dpmpp_2m": (4, 8, 16, 40)}}
SAMPLERS = ("ctm", "score", "teacher")
QUICK = {"ctm_steps": (1, 2, 4), "gammas": (0.0, 1.0), "score_steps": (2,),
         "teacher_steps": {"euler": (4,), "heun": (2, 4), "dpmpp_2m": (4,)}}


@dataclass(frozen=True)
class Setting:
    """One sampler configuration: ``sampler`` ctm/teacher/score, ``steps``, ``gamma`` (ctm), ``solver`` (ODE)."""

    sampler: str
    steps: int
    gamma: float = 0.0
    solver: str = "heun"

    @property
    def label(self) -> str:
        if self.sampler == "ctm":
            return f"CTM γ={self.gamma:g}"
        return f"teacher {self.solver}" if self.sampler == "teacher" else f"student score {self.solver}"


def settings_grid(grid: dict, samplers: tuple[str, ...] = SAMPLERS) -> list[Setting]:
    """CTM steps × γ (1 step once: γ does not act on a single jump), student score (Heun), teacher solvers × steps."""
    out = []
    if "ctm" in samplers:
        out += [Setting("ctm", 1)] + [Setting("ctm", n, g) for g in grid["gammas"] for n in grid["ctm_steps"] if n > 1]
    if "score" in samplers:
        out += [Setting("score", n) for n in grid["score_steps"]]
    if "teacher" in samplers:
        out += [Setting("teacher", n, solver=s) for s, steps in grid["teacher_steps"].items() for n in steps]
    return out


def scores(out, waves, sr: int, prompts, reference_embeddings) -> dict:
    """FD_synth, classifier and judge accuracy, and their agreement, of clips ``[N, T]`` with classifier outputs."""
    cls_verdicts = classifier_verdicts(out.attributes(), prompts.attrs)
    judge_v = judge_verdicts(waves, sr, prompts.attrs)
    attr, judged = accuracy_of_verdicts(cls_verdicts, CORE_ATTRIBUTES), accuracy_of_verdicts(judge_v, JUDGE_KEYS)
    agreement = verdict_agreement(cls_verdicts, judge_v)
    return {"fd_synth": frechet_distance_of_embeddings(reference_embeddings, out.embeddings),
            "attr_mean": attr.mean, "judge_mean": judged.mean, "attr": attr.accuracy, "judge": judged.accuracy,
            "classifier_judge_agreement": agreement, "agreement_mean": float(np.mean(list(agreement.values())))}


def real_floor(embedder, prompts, reference, seed: int, split: str) -> dict:
    """Scores of the prompts' own real clips; FD against as many other real clips (the floor at this size)."""
    waves, sr = prompts.reference()
    other = embedder.embed_and_predict(synthcaps_waves(len(prompts), seed + 1, split)[0], 16000)
    row = scores(reference, waves, sr, prompts, other.embeddings)
    return {"label": "real clips", **row}


def run(args) -> dict:
    torch.set_num_threads(1)
    pipe = SoundCTM.from_pretrained(args.model)
    embedder = build_synthcaps_embedder(args.classifier)
    split = "heldout_combo" if args.combo else "heldout"
    prompts = load_prompt_set("synthcaps-heldout-combo" if args.combo else "synthcaps-heldout", args.n_prompts,
                              args.seed)
    ref_waves, ref_sr = prompts.reference()
    reference = embedder.embed_and_predict(ref_waves, ref_sr)
    pipe.encode_text(prompts.captions)  # warm the text-embedding cache: every setting's time excludes first encodes
    rows, outputs = [], {}
    samplers = tuple(x for x in args.samplers if x != "teacher" or pipe.teacher is not None)
    for setting in settings_grid(QUICK if args.quick else FULL, samplers):
        t0 = time.perf_counter()
        gen = generate_batched(pipe, prompts.captions, args.batch_size, args.seed, steps=setting.steps,
                               gamma=setting.gamma, sampler=setting.sampler, teacher_solver=setting.solver)
        outputs[setting] = embedder.embed_and_predict(gen.waveforms, gen.sample_rate)
        row = scores(outputs[setting], gen.waveforms, gen.sample_rate, prompts, reference.embeddings)
        rows.append({**asdict(setting), "label": setting.label, "nfe": gen.nfe,
                     "seconds_per_clip": gen.seconds / len(prompts), "real_time_factor": gen.real_time_factor, **row})
        print(f"{setting.label:>22} steps {setting.steps:>2}  NFE {gen.nfe:>3}  FD {row['fd_synth']:8.3f}  "
              f"attr {row['attr_mean']:.3f}  judge {row['judge_mean']:.3f}  ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    return {
        "command": "python benchmarks/quality_vs_nfe.py " + shlex.join(args.argv),
        "model": str(args.model), "note": args.note, "split": split, "n_prompts": len(prompts), "seed": args.seed,
        "guidance": pipe.config.guidance, "threads": torch.get_num_threads(),
        "rows": rows,
        "real": real_floor(embedder, prompts, reference, args.seed, split),
        "preview": preview_rows(outputs),
    }


def preview_rows(outputs: dict) -> list[dict]:
    """Preview fidelity of every multi-step CTM setting (and of the teacher's Heun runs) against CTM 1-step."""
    preview = outputs.get(Setting("ctm", 1))
    rows = []
    if preview is None:
        return rows
    for s, out in outputs.items():
        if (s.sampler == "ctm" and s.steps > 1) or (s.sampler == "teacher" and s.solver == "heun"):
            pf = preview_fidelity(preview, out)
            rows.append({"label": s.label, "sampler": s.sampler, "solver": s.solver, "steps": s.steps,
                         "gamma": s.gamma, **pf.to_dict()})
    return rows


def plot(report: dict, path: Path) -> Path:
    """2×2: FD_synth and classifier attribute accuracy against NFE and against seconds per clip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    groups: dict[str, list[dict]] = {}
    one_step = next((r for r in report["rows"] if r["sampler"] == "ctm" and r["steps"] == 1), None)
    for r in report["rows"]:
        groups.setdefault(r["label"], []).append(r)
    for label, rs in groups.items():
        if label.startswith("CTM") and one_step is not None and one_step not in rs:
            rs = [one_step] + rs  # every γ starts from the same 1-step result
        for (i, metric), (j, x) in [((i, m), (j, x)) for i, m in enumerate(("fd_synth", "attr_mean"))
                                    for j, x in enumerate(("nfe", "seconds_per_clip"))]:
            axes[i, j].plot([r[x] for r in rs], [r[metric] for r in rs], marker="o", label=label)
    for i, metric in enumerate(("fd_synth", "attr_mean")):
        for j, x in enumerate(("NFE per clip", "seconds per clip")):
            ax = axes[i, j]
            ax.axhline(report["real"][metric], color="k", ls="--", lw=1, label="real clips")
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            if metric == "fd_synth":
                ax.set_yscale("log")
            ax.set_xlabel(x)
            ax.set_ylabel("FD_synth (lower is better)" if metric == "fd_synth" else "classifier attribute accuracy")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{report['model']}: {report['n_prompts']} {report['split']} prompts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_markdown(report: dict, png_name: str) -> str:
    real = report["real"]
    lines = [
        "# Quality vs NFE on held-out SynthCaps prompts", "",
        *([report["note"], ""] if report.get("note") else []),
        f"`{report['command']}` — {report['n_prompts']} `{report['split']}` prompts (seed {report['seed']}), model "
        f"`{report['model']}`, CFG ω = {report['guidance']} (teacher and student score; CTM: ν = 1, ω as a "
        f"condition), torch on {report['threads']} thread(s). FD_synth: SynthCaps-classifier embeddings of generated "
        "vs the prompts' real clips (lower is better); attr: classifier accuracy, mean over "
        f"{', '.join(CORE_ATTRIBUTES)}; judge: signal-measurement accuracy, mean over {', '.join(JUDGE_KEYS)}; "
        "seconds: per clip, sampling + VAE + Griffin-Lim (text embeddings cached beforehand).", "",
        f"![quality vs NFE]({png_name})", "",
        "cls≈judge: fraction of (clip, attribute) verdicts on which classifier and measurements agree (right or "
        "wrong alike), mean over the attributes both judge — how closely the classifier reads generated audio "
        "the way the signal measurements do.", "",
        "| sampler | steps | NFE | FD_synth | attr | judge | cls≈judge | s / clip | RTF |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| real clips | – | – | {real['fd_synth']:.3f} | {real['attr_mean']:.3f} | {real['judge_mean']:.3f} | "
        f"{real['agreement_mean']:.3f} | – | – |",
    ]
    for r in report["rows"]:
        lines.append(f"| {r['label']} | {r['steps']} | {r['nfe']} | {r['fd_synth']:.3f} | {r['attr_mean']:.3f} | "
                     f"{r['judge_mean']:.3f} | {r['agreement_mean']:.3f} | {r['seconds_per_clip']:.3f} | "
                     f"{r['real_time_factor']:.2f} |")
    keys = list(CORE_ATTRIBUTES)
    if not report["preview"]:
        return "\n".join(lines) + "\n"
    lines += ["", "## Preview fidelity (vs the CTM 1-step result from the same noise)", "",
              "Agreement: fraction of prompts whose classifier reads the same attribute from both results; "
              "rel. distance: paired embedding distance over the distance between different prompts' results "
              "(0 = identical, ≈ 1 = unrelated).", "",
              "| N-step result | steps | mean agreement | " + " | ".join(keys) + " | rel. distance |",
              "| --- | ---: | ---: |" + " ---: |" * len(keys) + " ---: |"]
    for p in report["preview"]:
        cells = " | ".join(f"{p['agreement'][k]:.2f}" for k in keys)
        lines.append(f"| {p['label']} | {p['steps']} | {p['mean_agreement']:.3f} | {cells} | "
                     f"{p['relative_distance']:.3f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]):
    p = argparse.ArgumentParser(prog="quality_vs_nfe", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--classifier", type=Path, default=None, help="SynthCaps classifier folder (default: bundled)")
    p.add_argument("--n-prompts", type=int, default=None, help="held-out prompts (default 32; 8 with --quick)")
    p.add_argument("--combo", action="store_true", help="use the held-out attribute combinations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--quick", action="store_true", help="a small grid (smoke test)")
    p.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated subset of ctm,score,teacher")
    p.add_argument("--note", default="", help="a provenance line for the markdown (e.g. where the model came from)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--name", default="quality_vs_nfe")
    args = p.parse_args(argv)
    args.n_prompts = args.n_prompts or (8 if args.quick else 32)
    args.samplers = tuple(x.strip() for x in args.samplers.split(",") if x.strip())
    if not args.samplers or set(args.samplers) - set(SAMPLERS):
        p.error(f"--samplers must be a comma-separated subset of {','.join(SAMPLERS)}")
    if args.n_prompts < 2:
        p.error("--n-prompts must be >= 2")
    if not (args.model / "model_index.json").is_file():
        p.error(f"--model: {args.model} is not a pipeline folder (no model_index.json)")
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = run(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    png = plot(report, args.out_dir / f"{args.name}.png")
    (args.out_dir / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (args.out_dir / f"{args.name}.md").write_text(render_markdown(report, png.name))
    print(render_markdown(report, png.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
