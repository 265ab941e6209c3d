"""Cost of a SoundCTM distillation step under different teacher-solve schedules, side by side in one run.

Each schedule runs the real recipe (``recipes/train_soundctm.py``) for a few steps on the same teacher and latent
cache, one CPU thread, and reads the logged ``perf/steps_per_s`` and the mean number of teacher Heun steps k per
target (``train/k``). A target costs about 2k − 1 guided teacher evaluations, each on the conditional and the
unconditional batch (CFG), so the step time grows with k; the grid size N sets how far apart (t, u) can be.

    python -m benchmarks.distill_schedule [--teacher DIR --cache-dir DIR --steps 6 --schedules 40:39,40:8,18:8,18:2]

Writes ``benchmarks/results/distill_schedule.{md,json}``. Quality is not measured here: each schedule would need
its own hours-long run; the bundled student's schedule (N = 18, k ≤ 2) is judged in ``audio_judge_ctm.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from recipes import train_soundctm
from soundctm.fileio import with_extension

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def parse_schedules(text: str) -> list[tuple[int, int]]:
    """``"40:39,18:2"`` → [(40, 39), (18, 2)]: grid size N and the cap on k (1 ≤ k_max ≤ N − 1)."""
    out = []
    for item in text.split(","):
        n, k = (int(v) for v in item.split(":"))
        if n < 2 or not 1 <= k <= n - 1:
            raise ValueError(f"--schedules: N:k_max needs N >= 2 and 1 <= k_max <= N - 1, got {item!r}")
        out.append((n, k))
    return out


def run_schedule(teacher: str, cache_dir: str, n: int, k_max: int, steps: int, batch: int, workdir: Path,
                 pairs: str = "") -> dict:
    out = workdir / f"N{n}_k{k_max}{'_pairs' if pairs else ''}"
    sets = [f"teacher_dir={teacher}", f"cache_dir={cache_dir}", f"train.out_dir={out}",
            f"export_dir={out / 'student'}", f"train.steps={steps}", f"train.batch_size={batch}",
            f"train.ckpt_every={steps}", "train.log_every=1", "train.tensorboard=false", "train.progress=false",
            f"ctm.grid_size={n}", f"ctm.max_k={k_max}", "threads=1"]
    if pairs:
        sets.append(f"ctm.pairs_path={pairs}")
    code = train_soundctm.main([a for kv in sets for a in ("--set", kv)])
    if code != 0:
        raise RuntimeError(f"recipe failed for N={n}, k_max={k_max} (exit {code})")
    logs = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in logs if r.get("step", 0) >= 2 and "perf/steps_per_s" in r]  # step 1 carries warm-up
    seconds = statistics.median(1.0 / r["perf/steps_per_s"] for r in timed)
    k_mean = statistics.mean(r["train/k"] for r in logs if "train/k" in r)
    return {"N": n, "k_max": k_max, "pairs": bool(pairs), "seconds_per_step": seconds, "k_mean": k_mean,
            "teacher_evals_per_target": 2 * k_mean - 1, "steps_timed": len(timed)}


def write(rows: list[dict], out: Path, command: str, batch: int) -> None:
    base = next((r for r in rows if r["N"] == 18 and r["k_max"] == 2 and not r["pairs"]), rows[-1])
    lines = ["# SoundCTM distillation: cost per step by teacher-solve schedule", "",
             f"The real recipe, batch {batch}, one CPU thread, same teacher and cache; median seconds per step after "
             f"the first. `{command}`", "",
             "| grid N | k ≤ | pair term | mean k | guided teacher evals / target | s / step | × vs N=18, k≤2 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['N']} | {r['k_max']} | {'yes' if r['pairs'] else '—'} | {r['k_mean']:.2f} | "
                     f"{r['teacher_evals_per_target']:.1f} | {r['seconds_per_step']:.2f} | "
                     f"{r['seconds_per_step'] / base['seconds_per_step']:.2f}× |")
    lines += ["", "Each guided evaluation runs the conditional and unconditional batch. SoundCTM's schedule (N = 40, "
              "k up to 39) is the first row; the bundled student used N = 18, k ≤ 2 (+ the cached-pair term in its "
              "later stages)."]
    out.parent.mkdir(parents=True, exist_ok=True)
    with_extension(out, ".md").write_text("\n".join(lines) + "\n")
    payload = {"command": command, "batch": batch, "rows": rows}
    with_extension(out, ".json").write_text(json.dumps(payload, indent=2) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default=str(ROOT / "soundctm" / "pretrained" / "synthcaps-tiny" / "teacher"))
    p.add_argument("--cache-dir", default=str(ROOT / "cache" / "synthcaps-train"))
    p.add_argument("--schedules", default="40:39,40:8,18:8,18:2")
    p.add_argument("--pairs", default="", help="a teacher_pairs.py file: adds an N=18, k≤2 row with the pair term")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--out", default=str(RESULTS / "distill_schedule"))
    args = p.parse_args(argv)
    try:
        schedules = parse_schedules(args.schedules)
    except ValueError as err:
        p.error(str(err))
    if args.steps < 3:
        p.error(f"--steps must be >= 3 (the first step is not timed), got {args.steps}")
    if not Path(args.cache_dir).is_dir():
        p.error(f"--cache-dir {args.cache_dir!r} does not exist (write it with `soundctm cache`)")
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, k in schedules:
            rows.append(run_schedule(args.teacher, args.cache_dir, n, k, args.steps, args.batch, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
        if args.pairs:
            rows.append(run_schedule(args.teacher, args.cache_dir, 18, 2, args.steps, args.batch, Path(tmp),
                                     pairs=args.pairs))
            print(json.dumps(rows[-1]), flush=True)
    write(rows, Path(args.out), "python -m benchmarks.distill_schedule " + " ".join(argv or sys.argv[1:]),
          args.batch)
    print(with_extension(Path(args.out), ".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
