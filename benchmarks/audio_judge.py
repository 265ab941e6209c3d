"""Judge generated audio against SynthCaps prompts with the measurement functions (no learned model).

    python benchmarks/audio_judge.py --model soundctm/pretrained/synthcaps-tiny --n-prompts 48
    python benchmarks/audio_judge.py --quick          # a tiny random pipeline, seconds (checks the script)

Tables (markdown + JSON under benchmarks/results/):
- teacher: per-attribute accuracy at 10 / 20 / 40 Heun steps × guidance ω ∈ {1, 2, 3.5, 5} (the teacher issue);
- ctm: 1 / 2 / 4 / 8 / 16 steps × γ ∈ {0, 0.3, 0.6, 1}, the 40-step teacher and the student's own score
  sampler at the default ω (the SoundCTM issue).
Prompts: the SynthCaps "heldout" split (unseen clips of seen attribute combinations), one fixed seed per prompt.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
ATTRS = ("family", "pitch", "count", "sweep", "loudness")


def judge_batch(waves: np.ndarray, sr: int, attrs_list: list[dict]) -> dict[str, list[bool]]:
    """Per attribute, the list of verdicts over clips that prompt it."""
    from soundctm.data.synthcaps_measure import judge

    out: dict[str, list[bool]] = {a: [] for a in ATTRS}
    for wave, attrs in zip(waves, attrs_list):
        for k, ok in judge(wave, sr, attrs).items():
            if k in out:
                out[k].append(bool(ok))
    return out


def accuracy_row(verdicts: dict[str, list[bool]]) -> dict[str, float | None]:
    """Accuracy per attribute (None when no prompt asked for it), their mean over attributes ("mean", the figure
    the goals are stated in) and the share of all verdicts that are right ("pooled": every judged attribute of every
    clip counts once, so an attribute that few prompts set, like sweep, moves it less)."""
    row = {a: (float(np.mean(v)) if v else None) for a, v in verdicts.items()}
    vals = [v for v in row.values() if v is not None]
    row["mean"] = float(np.mean(vals)) if vals else None
    every = [ok for v in verdicts.values() for ok in v]
    row["pooled"] = float(np.mean(every)) if every else None
    return row


def evaluate(pipe, prompts, batch: int, **kw) -> dict:
    """Generate every prompt (seed = its index) in batches and judge it; returns accuracy + timing."""
    verdicts: dict[str, list[bool]] = {a: [] for a in ATTRS}
    t0, nfe = time.perf_counter(), None
    for i in range(0, len(prompts), batch):
        chunk = prompts[i: i + batch]
        audio = pipe.generate([c for c, _ in chunk], seed=i, **kw)
        nfe = audio.info["nfe"]
        for k, v in judge_batch(audio.waveforms, audio.sample_rate, [a for _, a in chunk]).items():
            verdicts[k] += v
    return {**accuracy_row(verdicts), "nfe": nfe, "seconds": time.perf_counter() - t0}


def attribute_counts(prompts) -> dict[str, int]:
    """How many prompts each attribute is judged on (the judge skips attributes a prompt does not set)."""
    from soundctm.data.synthcaps_measure import judge_measurement, measure

    probe = measure(np.zeros(16000, np.float32), 16000)
    counts = dict.fromkeys(ATTRS, 0)
    for _, attrs in prompts:
        for k in judge_measurement(probe, attrs):
            if k in counts:
                counts[k] += 1
    return counts


def fmt(v) -> str:
    return "—" if v is None else f"{100 * v:.0f}"


def table(title: str, rows: list[dict], keys: list[str]) -> list[str]:
    head = keys + [*ATTRS, "mean", "pooled", "NFE", "s"]
    lines = [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r[k]) for k in keys] + [fmt(r.get(a)) for a in (*ATTRS, "mean", "pooled")] + [str(r["nfe"]),
                                                                                       f"{r['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "soundctm" / "pretrained" / "synthcaps-tiny"))
    p.add_argument("--n-prompts", type=int, default=48)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--tables", default="teacher,ctm")
    p.add_argument("--quick", action="store_true", help="tiny random pipeline, 4 prompts (script check only)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "audio_judge"))
    p.add_argument("--note", default=None, help="a provenance line for the markdown")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from soundctm.data.synthcaps import heldout_prompts
    from soundctm.pipeline import SoundCTM

    if args.quick:
        sys.path.insert(0, str(ROOT / "tests"))
        from pipeline_utils import make_pipeline

        pipe, n = make_pipeline(), 4
    else:
        pipe, n = SoundCTM.from_pretrained(args.model), args.n_prompts
    prompts = heldout_prompts(n, seed=0, split="heldout")
    guidance = pipe.config.guidance
    result = {"model": args.model if not args.quick else "tiny-random", "n_prompts": n, "guidance": guidance}
    lines = ["# Generated audio judged by the SynthCaps measurement functions", "",
             f"{n} held-out SynthCaps prompts, seed = prompt index; accuracy in % per prompted attribute "
             "(family: tonal / noise / impact; count: exact number of events; loudness: quiet vs loud); "
             "mean = over the five attributes, pooled = over all verdicts.", "",
             "Prompts judged per attribute: " + ", ".join(f"{k} {v}" for k, v in attribute_counts(prompts).items())
             + " (an attribute with few prompts moves in large steps).", ""]
    if args.note:
        lines += [args.note, ""]
    tables = set(args.tables.split(","))
    if "teacher" in tables:
        rows = []
        for steps in ((2, 4) if args.quick else (10, 20, 40)):
            for w in (1.0, 2.0, 3.5, 5.0):
                rows.append({"steps": steps, "ω": w, **evaluate(pipe, prompts, args.batch, steps=steps,
                                                                guidance=w, sampler="teacher")})
                print(rows[-1], flush=True)
        result["teacher"] = rows
        lines += table("Teacher (Heun) × guidance", rows, ["steps", "ω"])
    if "ctm" in tables:
        rows = [{"sampler": "teacher heun", "steps": 40 if not args.quick else 2, "γ": "—",
                 **evaluate(pipe, prompts, args.batch, steps=40 if not args.quick else 2, sampler="teacher")}]
        print(rows[-1], flush=True)
        for steps in ((1, 2) if args.quick else (1, 2, 4, 8, 16)):
            for gamma in (0.0, 0.3, 0.6, 1.0):
                rows.append({"sampler": "ctm", "steps": steps, "γ": gamma,
                             **evaluate(pipe, prompts, args.batch, steps=steps, gamma=gamma)})
                print(rows[-1], flush=True)
        rows.append({"sampler": "score (student g, heun)", "steps": 40 if not args.quick else 2, "γ": "—",
                     **evaluate(pipe, prompts, args.batch, steps=40 if not args.quick else 2, sampler="score")})
        result["ctm"] = rows
        lines += table(f"CTM vs teacher at ω = {guidance}", rows, ["sampler", "steps", "γ"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
