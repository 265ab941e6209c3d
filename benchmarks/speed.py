"""End-to-end speed, side by side in one run: 1-step CTM vs the 40-step CFG teacher (text → waveform).

    python benchmarks/speed.py [--model DIR] [--repeats 3] [--threads 1]

Times include text encoding (cached after the first call), sampling, VAE decode and Griffin-Lim, at batch 1 and
16, alternating the two samplers so both see the same machine load. Writes benchmarks/results/speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"ctm 1 step": dict(steps=1, sampler="ctm"), "ctm 4 steps γ=0": dict(steps=4, sampler="ctm"),
           "teacher heun 40 (CFG)": dict(steps=40, sampler="teacher")}


def time_once(pipe, prompts, **kw) -> tuple[float, dict]:
    t0 = time.perf_counter()
    audio = pipe.generate(prompts, seed=0, **kw)
    return time.perf_counter() - t0, audio.info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "soundctm" / "pretrained" / "synthcaps-tiny"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from soundctm.pipeline import SoundCTM

    t0 = time.perf_counter()
    pipe = SoundCTM.from_pretrained(args.model)
    load_s = time.perf_counter() - t0
    rows = []
    for b in (int(x) for x in args.batches.split(",")):
        prompts = [f"a loud beep sounding {['once', 'twice', 'three times'][i % 3]}" for i in range(b)]
        for kw in CONFIGS.values():  # warm-up: text cache, allocator
            time_once(pipe, prompts[:1], **kw)
        times = {name: [] for name in CONFIGS}
        info = {}
        for _ in range(args.repeats):
            for name, kw in CONFIGS.items():
                s, info[name] = time_once(pipe, prompts, **kw)
                times[name].append(s)
        base = statistics.median(times["teacher heun 40 (CFG)"])
        for name in CONFIGS:
            med = statistics.median(times[name])
            rows.append({"batch": b, "method": name, "nfe": info[name]["nfe"], "seconds": med,
                         "speedup_vs_teacher": base / med, "real_time_factor": 2.0 * b / med})
            print(rows[-1], flush=True)
    lines = ["# End-to-end generation speed (text → 2 s waveform), this CPU", "",
             f"{args.threads} thread(s), median of {args.repeats} alternating runs; model load {load_s:.1f} s; "
             "real-time factor = seconds of audio per second of compute.", "",
             "| batch | method | NFE | seconds | speed-up vs teacher | real-time factor |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['method']} | {r['nfe']} | {r['seconds']:.2f} | {r['speedup_vs_teacher']:.1f}× | "
              f"{r['real_time_factor']:.1f} |" for r in rows]
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"load_seconds": load_s, "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
