"""Judge generated audio against SynthCaps prompts with the measurement functions (no learned model).

    python benchmarks/audio_judge.py --model soundctm/pretrained/synthcaps-tiny --n-prompts 48
    python benchmarks/audio_judge.py --quick          # a tiny random pipeline, seconds (checks the script)

Tables (markdown + JSON under benchmarks/results/):
- teacher: per-attribute accuracy at 10 / 20 / 40 Heun steps × guidance ω ∈ {1, 2, 3.5, 5} (the teacher issue);
- ctm: 1 / 2 / 4 / 8 / 16 steps × γ ∈ {0, 0.3, 0.6, 1}, the 40-step teacher and the student's own score
  sampler at the default ω (the SoundCTM issue);
- goals: the two SoundCTM goals read paired: the 40-step teacher, CTM 1 / 2 / 4 steps, each CTM row with its
  difference to the teacher and a 95 % paired-bootstrap interval over prompts (use ≥ 500 prompts: with 144, the
  sweep attribute has about 10 prompts and one of them moves the mean by 2 points), e.g.
  ``--n-prompts 576 --tables goals --out benchmarks/results/audio_judge_goals``. The teacher row's verdicts are
  kept under ``cache/audio_judge/`` (``--teacher-cache``; the ctm table's teacher row shares it), so judging the
  next student on the same set skips the teacher: 2 min 40 s for a 576-prompt set instead of about 24 on this CPU
  (set 8, identical table).
- students: a candidate student (``--candidate DIR``) paired against the pipeline's student on the same CTM rows;
- solve: the teacher at ``--solve-steps`` Heun steps paired against its (cached) 40-step row: what the coarser
  solve of the cached distillation trajectories (``recipes/teacher_pairs.py --steps 17``) gives up.
Prompts: the SynthCaps "heldout" split (unseen clips of seen attribute combinations), one fixed seed per prompt.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from soundctm.fileio import atomic_write_text, with_extension
from soundctm.metrics.synthcaps_judge import JUDGED_ATTRIBUTES, judge_scored

ROOT = Path(__file__).resolve().parents[1]
ATTRS = JUDGED_ATTRIBUTES


def judge_clips(waves: np.ndarray, sr: int, attrs_list: list[dict]) -> list[dict[str, bool]]:
    """Per clip, its verdict on each attribute its prompt sets."""
    return [judge_scored(wave, sr, attrs) for wave, attrs in zip(waves, attrs_list)]


def pool_verdicts(per_clip: list[dict[str, bool]]) -> dict[str, list[bool]]:
    """Per attribute, the list of verdicts over the clips that prompt it."""
    out: dict[str, list[bool]] = {a: [] for a in ATTRS}
    for clip in per_clip:
        for k, ok in clip.items():
            out[k].append(ok)
    return out


def judge_batch(waves: np.ndarray, sr: int, attrs_list: list[dict]) -> dict[str, list[bool]]:
    """Per attribute, the list of verdicts over clips that prompt it."""
    return pool_verdicts(judge_clips(waves, sr, attrs_list))


def verdict_matrix(per_clip: list[dict[str, bool]]) -> tuple[np.ndarray, np.ndarray]:
    """(right, asked): two [n_clips, n_attributes] 0/1 arrays in ATTRS order."""
    right = np.array([[float(c.get(a, False)) for a in ATTRS] for c in per_clip]).reshape(-1, len(ATTRS))
    asked = np.array([[float(a in c) for a in ATTRS] for c in per_clip]).reshape(-1, len(ATTRS))
    return right, asked


def _metrics(right: np.ndarray, asked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over attributes and pooled share for stacked resamples ``[..., n_clips, n_attributes]``."""
    r, a = right.sum(-2), asked.sum(-2)
    acc = np.where(a > 0, r / np.maximum(a, 1), np.nan)
    return np.nanmean(acc, -1), r.sum(-1) / np.maximum(a.sum(-1), 1)


def paired_bootstrap(per_clip_a: list[dict], per_clip_b: list[dict], n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict[str, dict[str, float]]:
    """Difference b − a of the mean and the pooled accuracy over the same prompts, with a percentile interval from
    resampling prompts (both samplers get the same resampled prompts, so prompt difficulty cancels)."""
    if len(per_clip_a) != len(per_clip_b) or not per_clip_a:
        raise ValueError(f"per_clip_a and per_clip_b must be the same non-empty prompts, got "
                         f"{len(per_clip_a)} and {len(per_clip_b)}")
    (ra, aa), (rb, ab) = verdict_matrix(per_clip_a), verdict_matrix(per_clip_b)
    if not np.array_equal(aa, ab):
        raise ValueError("per_clip_a and per_clip_b judge different attributes: not the same prompts")
    idx = np.random.default_rng(seed).integers(0, len(ra), size=(n_boot, len(ra)))
    mean_a, pooled_a = _metrics(ra[idx], aa[idx])
    mean_b, pooled_b = _metrics(rb[idx], ab[idx])
    full_a, full_b = _metrics(ra, aa), _metrics(rb, ab)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out = {}
    for name, k, d in (("mean", 0, mean_b - mean_a), ("pooled", 1, pooled_b - pooled_a)):
        d = d[np.isfinite(d)]
        out[name] = {"diff": float(full_b[k] - full_a[k]), "lo": float(np.percentile(d, lo)),
                     "hi": float(np.percentile(d, hi))}
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


def evaluate(pipe, prompts, batch: int, per_clip: list | None = None, **kw) -> dict:
    """Generate every prompt (seed = its index) in batches and judge it; returns accuracy + timing.
    ``per_clip``, if given, is extended with each clip's verdicts (for paired comparisons)."""
    clips: list[dict[str, bool]] = []
    t0, nfe = time.perf_counter(), None
    for i in range(0, len(prompts), batch):
        chunk = prompts[i: i + batch]
        audio = pipe.generate([c for c, _ in chunk], seed=i, **kw)
        nfe = audio.info["nfe"]
        clips += judge_clips(audio.waveforms, audio.sample_rate, [a for _, a in chunk])
    if per_clip is not None:
        per_clip += clips
    return {**accuracy_row(pool_verdicts(clips)), "nfe": nfe, "seconds": time.perf_counter() - t0}


def teacher_key(pipe, prompts, batch: int, **kw) -> str:
    """A digest of everything a teacher row's verdicts depend on: the teacher, VAE, vocoder and text-encoder weights,
    the pipeline config, the prompts and their seeds (batch), the sampler arguments and the torch version. The
    student is left out on purpose: the teacher sampler never calls it."""
    h = hashlib.sha256()
    h.update(json.dumps({"config": dataclasses.asdict(pipe.config), "prompts": prompts, "batch": batch, "kw": kw,
                         "torch": torch.__version__}, sort_keys=True, default=str).encode())
    for name in ("teacher", "vae", "vocoder", "text_encoder"):
        module = getattr(pipe, name, None)
        net = module if hasattr(module, "state_dict") else getattr(module, "model", None)  # TextEncoder wraps one
        h.update(f"<{name}:{type(module).__name__}:{getattr(module, 'max_length', '')}>".encode())
        for k, v in (net.state_dict() if hasattr(net, "state_dict") else {}).items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def evaluate_teacher(pipe, prompts, batch: int, per_clip: list, cache_dir: str | Path | None = None, **kw) -> dict:
    """``evaluate(..., sampler="teacher")``, its row and per-clip verdicts kept in ``cache_dir`` under
    ``teacher_key``: the teacher is most of a goals run's cost (158 of its 169 network evaluations per prompt) and
    does not change between the student candidates judged against it. ``cache_dir=None`` always generates."""
    kw = {**kw, "sampler": "teacher"}
    if cache_dir is None:
        return evaluate(pipe, prompts, batch, per_clip=per_clip, **kw)
    path = Path(cache_dir) / f"teacher-{teacher_key(pipe, prompts, batch, **kw)[:32]}.json"
    if path.exists():
        saved = json.loads(path.read_text())
        per_clip += saved["clips"]
        print(f"teacher verdicts from {path}", flush=True)
        return {**saved["row"], "cached": True}
    clips: list = []
    row = evaluate(pipe, prompts, batch, per_clip=clips, **kw)
    atomic_write_text(path, json.dumps({"row": row, "clips": clips}))  # a reader never sees half a file
    per_clip += clips
    return row


def attribute_counts(prompts) -> dict[str, int]:
    """How many prompts each attribute is judged on (the judge skips attributes a prompt does not set)."""
    from soundctm.metrics.synthcaps_judge import prompted_attributes

    counts = dict.fromkeys(ATTRS, 0)
    for _, attrs in prompts:
        for k in prompted_attributes(attrs):
            counts[k] += 1
    return counts


def fmt(v) -> str:
    return "—" if v is None else f"{100 * v:.0f}"


def md_head(head: list[str]) -> list[str]:
    """A markdown table's header and rule lines."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def table(title: str, rows: list[dict], keys: list[str]) -> list[str]:
    head = keys + [*ATTRS, "mean", "pooled", "NFE", "s"]
    lines = [f"## {title}", "", *md_head(head)]
    for r in rows:
        cells = [str(r[k]) for k in keys] + [fmt(r.get(a)) for a in (*ATTRS, "mean", "pooled")] + [str(r["nfe"]),
                                                                                       f"{r['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


CTM_ROWS = ((1, 0.0), (2, 0.0), (4, 0.0), (4, 0.3))  # (steps, γ) of the goals and students tables


def parse_ctm_rows(text: str) -> tuple[tuple[int, float], ...]:
    """``--ctm-rows`` "1:0,4:0" → ((1, 0.0), (4, 0.0)); ValueError naming the argument on a malformed row, steps
    < 1 or γ outside [0, 1]."""
    rows = []
    for item in text.split(","):
        try:
            steps, gamma = item.split(":")
            row = (int(steps), float(gamma))
        except ValueError:
            raise ValueError(f"--ctm-rows: each row is STEPS:GAMMA (e.g. 1:0,4:0), got {item!r}") from None
        if row[0] < 1 or not 0.0 <= row[1] <= 1.0:
            raise ValueError(f"--ctm-rows: steps must be >= 1 and γ in [0, 1], got {item!r}")
        rows.append(row)
    return tuple(rows)


GOALS = {(1, 0.0): ("1 step within 5 points of the teacher", -0.05), (4, 0.0): ("4 steps, γ = 0, ≥ teacher", 0.0)}


def teacher_reference(pipe, prompts, batch: int, clips: list, quick: bool = False,
                      teacher_cache: str | Path | None = None) -> dict:
    """The 40-step teacher row (2 steps with ``quick``) that the goals, solve and ctm tables compare against, its
    per-clip verdicts appended to ``clips``, read from ``teacher_cache`` when it holds them."""
    steps_t = 2 if quick else 40
    row = {"sampler": "teacher heun", "steps": steps_t, "γ": "—",
           **evaluate_teacher(pipe, prompts, batch, clips, teacher_cache, steps=steps_t)}
    print(row, flush=True)
    return row


def paired_to(ref_clips: list, pipe, prompts, batch: int, label: dict, **kw) -> dict:
    """``label`` + ``evaluate(pipe, ..., **kw)``'s row, with its paired difference to ``ref_clips`` as vs_teacher."""
    clips: list = []
    row = {**label, **evaluate(pipe, prompts, batch, per_clip=clips, **kw)}
    row["vs_teacher"] = paired_bootstrap(ref_clips, clips)
    print(row, flush=True)
    return row


PAIRED_HEAD = ["sampler", "steps", "γ", *ATTRS, "mean", "pooled", "Δ mean (95 % CI)", "Δ pooled (95 % CI)"]


def goals_table(pipe, prompts, batch: int, guidance: float, quick: bool = False,
                teacher_cache: str | Path | None = None, nu: float = 1.0,
                ctm_rows: tuple[tuple[int, float], ...] = CTM_ROWS,
                sigmas: list[float] | None = None) -> tuple[list[dict], list[str]]:
    """The SoundCTM goals, paired: the 40-step teacher and CTM rows (``ctm_rows``, (steps, γ) pairs) on the same
    prompts and seeds, each CTM row with
    its difference to the teacher (mean over attributes and pooled) and a 95 % paired-bootstrap interval. The
    teacher's verdicts come from ``teacher_cache`` when it holds them (see ``evaluate_teacher``); the CTM rows
    sample with ν-sampling at ``nu`` (1: the conditional jump alone) along ``sigmas`` (default: the pipeline's Karras
    grid)."""
    ref_clips: list = []
    rows = [teacher_reference(pipe, prompts, batch, ref_clips, quick, teacher_cache)]
    rows += [paired_to(ref_clips, pipe, prompts, batch, {"sampler": "ctm", "steps": steps, "γ": gamma},
                       steps=steps, gamma=gamma, nu=nu, sigmas=sigmas) for steps, gamma in ctm_rows]
    return rows, goals_lines(rows, guidance, nu)


def solve_table(pipe, prompts, batch: int, guidance: float, steps_list: tuple[int, ...], quick: bool = False,
                teacher_cache: str | Path | None = None) -> tuple[list[dict], list[str]]:
    """The teacher's Heun solve at fewer steps, paired against its 40-step row on the same prompts and seeds: how
    much a coarser solve (e.g. the 17 steps of the cached distillation trajectories, ``teacher_pairs.py --steps``)
    loses on the judge."""
    ref_clips: list = []
    rows = [teacher_reference(pipe, prompts, batch, ref_clips, quick, teacher_cache)]
    rows += [paired_to(ref_clips, pipe, prompts, batch, {"sampler": "teacher heun", "steps": k, "γ": "—"},
                       steps=k, sampler="teacher") for k in steps_list]
    lines = [f"## Teacher solve length at ω = {guidance}: K Heun steps minus {rows[0]['steps']}, paired over the "
             "same prompts", "", *md_head([*PAIRED_HEAD, "NFE"])]
    lines += [paired_row(r, "vs_teacher", (str(r["nfe"]),)) for r in rows]
    return rows, lines + [""]


def with_student(pipe, student):
    """A shallow copy of ``pipe`` (same VAE, vocoder, text encoder, teacher and config) around another student."""
    other = copy.copy(pipe)
    other.student = student.to(pipe.device).eval().requires_grad_(False)
    return other


def students_table(pipe, candidate, prompts, batch: int, nu: float = 1.0,
                   ctm_rows: tuple[tuple[int, float], ...] = CTM_ROWS) -> tuple[list[dict], list[str]]:
    """Two students through the same CTM rows (``ctm_rows``) on the same prompts and seeds: each candidate row with
    its paired difference to ``pipe``'s row (to choose between checkpoints without the teacher's cost)."""
    rows = []
    for steps, gamma in ctm_rows:
        clips: dict[str, list] = {"base": [], "candidate": []}
        for name, p in (("base", pipe), ("candidate", candidate)):
            rows.append({"sampler": f"ctm ({name})", "steps": steps, "γ": gamma,
                         **evaluate(p, prompts, batch, per_clip=clips[name], steps=steps, gamma=gamma, nu=nu)})
        rows[-1]["vs_base"] = paired_bootstrap(clips["base"], clips["candidate"])
        print(rows[-2], rows[-1], sep="\n", flush=True)
    lines = [f"## Candidate student minus the pipeline's student, paired over the same prompts and seeds{nu_label(nu)}",
             "",
             *md_head(PAIRED_HEAD)]
    lines += [paired_row(r, "vs_base") for r in rows]
    return rows, lines + [""]


def paired_row(r: dict, key: str, extra: tuple[str, ...] = ()) -> str:
    """A markdown row: sampler, steps, γ, the accuracies, then r[key]'s paired Δ (mean, pooled) with intervals."""
    d = r.get(key)
    ci = [f"{100 * d[m]['diff']:+.1f} ({100 * d[m]['lo']:+.1f}, {100 * d[m]['hi']:+.1f})" if d else "—"
          for m in ("mean", "pooled")]
    return "| " + " | ".join([str(r["sampler"]), str(r["steps"]), str(r["γ"])]
                             + [fmt(r.get(a)) for a in (*ATTRS, "mean", "pooled")] + ci + list(extra)) + " |"


def goal_verdict(d: dict[str, float], bound: float) -> str:
    """A goal "Δ ≥ bound" read from a paired difference and its interval."""
    point = "met" if d["diff"] >= bound else "not met"
    if d["lo"] >= bound:
        return f"{point}; the whole 95 % interval clears the bound"
    if d["hi"] < bound:
        return f"{point}; the whole 95 % interval falls short of the bound"
    return f"{point} on the point estimate; the 95 % interval straddles the bound"


def nu_label(nu: float) -> str:
    """How a title names the CTM rows' ν-sampling: nothing at ν = 1 (the default, conditional jumps only)."""
    return "" if nu == 1.0 else f", CTM with ν = {nu:g} (twice the NFE)"


def goals_lines(rows: list[dict], guidance: float, nu: float = 1.0) -> list[str]:
    """Markdown for goals_table's rows."""
    lines = [f"## Goals at ω = {guidance}{nu_label(nu)}: CTM minus the {rows[0]['steps']}-step teacher, paired over "
             "the same prompts", "", "Δ in points; the interval resamples prompts (2000 paired bootstrap draws).", "",
             *md_head([*PAIRED_HEAD, "NFE"])]
    lines += [paired_row(r, "vs_teacher", (str(r["nfe"]),)) for r in rows]
    lines.append("")
    for r in rows:
        goal = GOALS.get((r["steps"], r["γ"])) if r["sampler"] == "ctm" else None
        if goal:
            name, bound = goal
            for m in ("mean", "pooled"):
                d = r["vs_teacher"][m]
                lines.append(f"- {name} ({m}): Δ {100 * d['diff']:+.1f} points → {goal_verdict(d, bound)}.")
    return lines + [""]


def pool_sets(estimates: list[dict[str, float]], level: float = 0.95) -> dict[str, float]:
    """Inverse-variance pooling of independent prompt sets' paired differences: each {"diff", "lo", "hi"} gives a
    standard error (hi − lo) / (2 z); the pooled difference weights each set by 1 / se², with se = (Σ 1/se²)^-½."""
    if not estimates:
        raise ValueError("estimates must name at least one prompt set")
    z = statistics.NormalDist().inv_cdf((1 + level) / 2)
    se = np.array([(e["hi"] - e["lo"]) / (2 * z) for e in estimates])
    if np.any(se <= 0):
        raise ValueError("every prompt set needs an interval of positive width to be weighted")
    w = 1 / se**2
    diff = float(np.sum(w * [e["diff"] for e in estimates]) / w.sum())
    half = z / float(np.sqrt(w.sum()))
    return {"diff": diff, "lo": diff - half, "hi": diff + half}


POOL_KINDS = {  # what --pool reads from each kind of run: its rows, the CTM rows' name and their paired difference
    "goals": (lambda res: res["goals"], "ctm", "vs_teacher", "CTM − teacher", "Goals"),
    "students": (lambda res: res["students"]["rows"], "ctm (candidate)", "vs_base",
                 "candidate − the pipeline's student", "Candidate student"),
    "solve": (lambda res: res["solve"], "teacher heun", "vs_teacher", "teacher Heun K steps − Heun 40",
              "Teacher solve length"),
}


def find_row(rows: list[dict], sampler: str, steps: int, gamma) -> dict | None:
    """The row of ``rows`` with this sampler, step count and γ, or None."""
    return next((r for r in rows if r["sampler"] == sampler and r["steps"] == steps and r["γ"] == gamma), None)


def ctm_label(steps: int, gamma) -> str:
    """A pooled table's row name: "1 step γ = 0.0", "4 steps γ = 0.3"."""
    return f"{steps} step{'s' * (steps > 1)} γ = {gamma}"


def run_kind(res: dict) -> str:
    """Which table a benchmark JSON holds: "goals", "students" or "solve" (ValueError otherwise)."""
    kinds = [k for k in POOL_KINDS if k in res]
    if len(kinds) != 1:
        raise ValueError("--pool needs JSON files written by exactly one of --tables goals, students or solve")
    return kinds[0]


def pooled_lines(results: list[dict], names: list[str]) -> list[str]:
    """Markdown: each run's paired rows as differences (CTM to the teacher for goals runs, to the pipeline's student
    for students runs; the shorter teacher solves to Heun 40 for solve runs), and their inverse-variance pool over
    the independent prompt sets."""
    kinds = {run_kind(res) for res in results}
    if len(kinds) != 1:
        raise ValueError(f"--pool cannot mix kinds of runs ({', '.join(sorted(kinds))})")
    kind = kinds.pop()
    nus = {res.get("nu", 1.0) for res in results}
    if len(nus) != 1:
        raise ValueError(f"--pool cannot mix runs of different --nu ({sorted(nus)})")
    rows_of, sampler, key, what, title = POOL_KINDS[kind]
    head = ["teacher" if kind == "solve" else "CTM", *names, "pooled over the sets (95 % CI)"]
    lines = [f"## {title} pooled over independent prompt sets{nu_label(nus.pop())}", "",
             f"Δ = {what} in points, mean over attributes (pooled verdicts in brackets); the sets are "
             "independent held-out prompt draws, pooled by inverse variance (`pool_sets`).", "",
             *md_head(head)]
    verdicts = []
    row_keys = CTM_ROWS if kind != "solve" else [(r["steps"], r["γ"]) for r in rows_of(results[0]) if key in r]
    for steps, gamma in row_keys:
        rows = [find_row(rows_of(res), sampler, steps, gamma) for res in results]
        if any(r is None for r in rows):
            continue
        cells, pooled = [], {}
        for m in ("mean", "pooled"):
            pooled[m] = pool_sets([r[key][m] for r in rows])
        for r in rows:
            d = r[key]
            cells.append(f"{100 * d['mean']['diff']:+.1f} ({100 * d['pooled']['diff']:+.1f})")
        pm, pp = pooled["mean"], pooled["pooled"]
        cells.append(f"{100 * pm['diff']:+.1f} ({100 * pm['lo']:+.1f}, {100 * pm['hi']:+.1f}) "
                     f"[{100 * pp['diff']:+.1f} ({100 * pp['lo']:+.1f}, {100 * pp['hi']:+.1f})]")
        label = f"Heun {steps}" if kind == "solve" else ctm_label(steps, gamma)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        goal = GOALS.get((steps, gamma)) if kind == "goals" else None
        if goal:
            for m in ("mean", "pooled"):
                verdicts.append(f"- {goal[0]} ({m}, {len(rows)} sets pooled): Δ {100 * pooled[m]['diff']:+.1f} "
                                f"points → {goal_verdict(pooled[m], goal[1])}.")
    if kind == "solve":
        return lines + [""]
    if kind == "students":
        return lines + ["", f"Candidate: `{results[0]['students']['candidate']}`.", "", *attribute_lines(results)]
    teachers = [f"{100 * res['goals'][0]['mean']:.0f} %" for res in results]
    return lines + ["", "Teacher Heun 40, mean accuracy per set: " + " / ".join(teachers) + ".", "", *verdicts, "",
                    *attribute_lines(results)]


def attribute_lines(results: list[dict]) -> list[str]:
    """Markdown: where the pooled Δ comes from. Per CTM row and attribute, the accuracy difference to the same
    reference the rows are paired against (the teacher in goals runs, the pipeline's student in students runs),
    averaged over the sets with equal weights: the sets are equal-sized draws, and the runs keep each attribute's
    accuracy but not its per-clip verdicts, so there is no interval. An attribute no prompt of a set asked for is
    left out of that set's share."""
    kind = run_kind(results[0])
    rows_of, sampler, _, what, _ = POOL_KINDS[kind]
    lines = ["### Per attribute", "", f"Δ = {what} in points per attribute, the plain mean over the sets (no interval: "
             "the runs keep each attribute's accuracy, not its per-clip verdicts).", "", *md_head(["CTM", *ATTRS])]
    for steps, gamma in CTM_ROWS:
        pairs = [(find_row(rows_of(res), sampler, steps, gamma),
                  rows_of(res)[0] if kind == "goals" else find_row(rows_of(res), "ctm (base)", steps, gamma))
                 for res in results]
        if any(row is None or ref is None for row, ref in pairs):
            continue
        cells = []
        for a in ATTRS:
            d = [row[a] - ref[a] for row, ref in pairs
                 if row.get(a) is not None and ref.get(a) is not None and np.isfinite(row[a] - ref[a])]
            cells.append(f"{100 * float(np.mean(d)):+.1f}" if d else "—")
        lines.append(f"| {ctm_label(steps, gamma)} | " + " | ".join(cells) + " |")
    return lines + [""]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "soundctm" / "pretrained" / "synthcaps-tiny"))
    p.add_argument("--n-prompts", type=int, default=48)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--tables", default="teacher,ctm", help="comma-separated: teacher, ctm, goals, students, solve")
    p.add_argument("--candidate", default=None,
                   help="an exported student folder for --tables students (compared with --model's student)")
    p.add_argument("--prompt-seed", type=int, default=0, help="which held-out prompt set (0 = the reported one)")
    p.add_argument("--quick", action="store_true", help="tiny random pipeline, 4 prompts (script check only)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "audio_judge"))
    p.add_argument("--teacher-cache", default=str(ROOT / "cache" / "audio_judge"), metavar="DIR",
                   help="keep the goals and ctm tables' teacher verdicts here, keyed by a digest of the teacher, "
                        "VAE, vocoder, text encoder, config and prompts, so the next candidate skips the teacher")
    p.add_argument("--no-teacher-cache", action="store_true", help="always generate the teacher's row")
    p.add_argument("--nu", type=float, default=1.0,
                   help="ν-sampling for the goals and students tables' CTM rows (1: no unconditional pass)")
    p.add_argument("--ctm-rows", default=",".join(f"{k}:{g:g}" for k, g in CTM_ROWS), metavar="STEPS:GAMMA,...",
                   help="the goals and students tables' CTM rows (e.g. 1:0,4:0 for the two goals alone)")
    p.add_argument("--ctm-sigmas", default=None, metavar="S0,S1,...",
                   help="goals table: the CTM rows' jump times (steps + 1 of them for every row), not the Karras grid")
    p.add_argument("--solve-steps", default="17", metavar="K,K",
                   help="--tables solve: the teacher's Heun step counts to pair against its 40 steps")
    p.add_argument("--note", default=None, help="a provenance line for the markdown")
    p.add_argument("--pool", nargs="+", metavar="JSON", default=None,
                   help="pool these --tables goals (or students, or solve) runs on independent prompt sets into --out; "
                        "generates nothing")
    args = p.parse_args(argv)
    if not (np.isfinite(args.nu) and args.nu >= 0):
        p.error(f"--nu must be a finite number >= 0, got {args.nu}")
    if args.pool:
        results = [json.loads(Path(f).read_text()) for f in args.pool]
        names = [f"set {r.get('prompt_seed')} ({r.get('n_prompts')})" for r in results]
        try:
            body = pooled_lines(results, names)
        except ValueError as err:
            p.error(str(err))
        title = POOL_KINDS[run_kind(results[0])][4].lower()
        lines = [f"# SoundCTM {title} pooled over prompt sets", "",
                 "From " + ", ".join(f"`{f}`" for f in args.pool) + ".", "", *body]
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with_extension(out, ".md").write_text("\n".join(lines))
        print("\n".join(lines))
        return 0
    tables = set(args.tables.split(","))
    unknown = tables - {"teacher", "ctm", "goals", "students", "solve"}
    if unknown:
        p.error(f"--tables: unknown table(s) {sorted(unknown)}; choose from teacher, ctm, goals, students, solve")
    try:
        solve_steps = tuple(int(k) for k in args.solve_steps.split(","))
    except ValueError:
        solve_steps = ()
    if not solve_steps or min(solve_steps) < 1:
        p.error(f"--solve-steps must be comma-separated step counts >= 1, got {args.solve_steps!r}")
    try:
        ctm_rows = parse_ctm_rows(args.ctm_rows)
    except ValueError as err:
        p.error(str(err))
    from soundctm.pipeline_cli import parse_sigmas

    try:
        ctm_sigmas = parse_sigmas(args.ctm_sigmas, "--ctm-sigmas")
    except ValueError as err:
        p.error(str(err))
    if ctm_sigmas is not None and any(steps != len(ctm_sigmas) - 1 for steps, _ in ctm_rows):
        p.error(f"--ctm-sigmas has {len(ctm_sigmas)} levels: every --ctm-rows row needs {len(ctm_sigmas) - 1} steps")
    if "students" in tables and not args.candidate:
        p.error("--tables students needs --candidate DIR (an exported student folder)")
    torch.set_num_threads(1)
    from soundctm.data.synthcaps import heldout_prompts
    from soundctm.debug import debug_pipeline
    from soundctm.pipeline import SoundCTM

    if args.quick:
        pipe, n = debug_pipeline(), 4
    else:
        pipe, n = SoundCTM.from_pretrained(args.model), args.n_prompts
    if ctm_sigmas:  # against the model's σ range now, not after the teacher's row
        from soundctm.pipeline import check_sigmas

        try:
            check_sigmas(ctm_sigmas, len(ctm_sigmas) - 1, "ctm", pipe.config.sigma_min, pipe.config.sigma_max)
        except ValueError as err:
            p.error(f"--ctm-sigmas: {err}")
    prompts = heldout_prompts(n, seed=args.prompt_seed, split="heldout")
    guidance = pipe.config.guidance
    result = {"model": args.model if not args.quick else "tiny-random", "n_prompts": n, "guidance": guidance,
              "prompt_seed": args.prompt_seed, "nu": args.nu, **({"ctm_sigmas": ctm_sigmas} if ctm_sigmas else {})}
    lines = ["# Generated audio judged by the SynthCaps measurement functions", "",
             f"{n} held-out SynthCaps prompts (prompt set {args.prompt_seed}; set 0's first 144 are the 144-prompt "
             "tables' prompts), seed = prompt index; accuracy in % per prompted attribute "
             "(family: tonal / noise / impact; count: exact number of events; loudness: quiet vs loud); "
             "mean = over the five attributes, pooled = over all verdicts.", "",
             "Prompts judged per attribute: " + ", ".join(f"{k} {v}" for k, v in attribute_counts(prompts).items())
             + " (an attribute with few prompts moves in large steps).", ""]
    if args.note:
        lines += [args.note, ""]
    if ctm_sigmas:
        lines += ["Goals' CTM jump times: " + ", ".join(f"{v:g}" for v in ctm_sigmas) + " (not the Karras grid).", ""]
    if "teacher" in tables:
        rows = []
        for steps in ((2, 4) if args.quick else (10, 20, 40)):
            for w in (1.0, 2.0, 3.5, 5.0):
                rows.append({"steps": steps, "ω": w, **evaluate(pipe, prompts, args.batch, steps=steps,
                                                                guidance=w, sampler="teacher")})
                print(rows[-1], flush=True)
        result["teacher"] = rows
        lines += table("Teacher (Heun) × guidance", rows, ["steps", "ω"])
    cache = None if args.no_teacher_cache or args.quick else args.teacher_cache
    if "ctm" in tables:
        rows = [teacher_reference(pipe, prompts, args.batch, [], args.quick, cache)]
        for steps in ((1, 2) if args.quick else (1, 2, 4, 8, 16)):
            for gamma in (0.0, 0.3, 0.6, 1.0):
                rows.append({"sampler": "ctm", "steps": steps, "γ": gamma,
                             **evaluate(pipe, prompts, args.batch, steps=steps, gamma=gamma)})
                print(rows[-1], flush=True)
        rows.append({"sampler": "score (student g, heun)", "steps": 40 if not args.quick else 2, "γ": "—",
                     **evaluate(pipe, prompts, args.batch, steps=40 if not args.quick else 2, sampler="score")})
        result["ctm"] = rows
        lines += table(f"CTM vs teacher at ω = {guidance}", rows, ["sampler", "steps", "γ"])
    if "goals" in tables:
        rows, lines_goals = goals_table(pipe, prompts, args.batch, guidance, args.quick, teacher_cache=cache,
                                        nu=args.nu, ctm_rows=ctm_rows, sigmas=ctm_sigmas)
        result["goals"] = rows
        lines += lines_goals
    if "solve" in tables:
        rows, lines_solve = solve_table(pipe, prompts, args.batch, guidance, solve_steps, args.quick,
                                        teacher_cache=cache)
        result["solve"] = rows
        lines += lines_solve
    if "students" in tables:
        from soundctm.nn.unet import TwoTimeTextUNet

        student = debug_pipeline(seed=1).student if args.quick else TwoTimeTextUNet.from_pretrained(args.candidate)
        rows, lines_students = students_table(pipe, with_student(pipe, student), prompts, args.batch, nu=args.nu,
                                                ctm_rows=ctm_rows)
        result["students"] = {"candidate": args.candidate, "rows": rows}
        lines += [f"Candidate: `{args.candidate}`.", "", *lines_students]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        with_extension(out, ".json").write_text(json.dumps(result, indent=2) + "\n")
        with_extension(out, ".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
