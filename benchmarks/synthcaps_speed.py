"""How long `soundctm synthcaps` takes to write N clips (wavs + manifest), and the in-memory rates.

Runs the CLI's own writer (`write_split`) with ``--workers`` processes into a temporary folder (deleted
afterwards unless ``--keep``), then times in-memory synthesis and `measure` on a sample in this process.
The target of the SynthCaps issue: 20,000 clips in under 5 minutes on a 2-core machine.
Writes ``benchmarks/results/synthcaps_speed.{md,json}``.

    .venv/bin/python benchmarks/synthcaps_speed.py [--n 20000 --workers 2 --sample 300]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from soundctm.data.synthcaps import SynthCaps, write_split
from soundctm.metrics.synthcaps_judge import judge_measurement, measure

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_S = 300.0


def time_cli_write(n: int, workers: int, seed: int, keep: Path | None) -> tuple[float, int]:
    """Wall seconds to write n train clips + manifest, and the bytes written."""
    out = keep or Path(tempfile.mkdtemp(prefix="synthcaps-speed-"))
    try:
        start = time.perf_counter()
        manifest = write_split(out, n, seed, "train", workers, 16000, 2.0)
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (out / "train").iterdir()) + manifest.stat().st_size
    finally:
        if keep is None:
            shutil.rmtree(out, ignore_errors=True)
    return seconds, size


def time_in_memory(sample: int, seed: int) -> dict:
    """Per-clip milliseconds of synthesis and of `measure`, and the judge accuracy, on `sample` clips."""
    data = SynthCaps(sample, seed=seed + 1, split="train")
    start = time.perf_counter()
    clips = [data[i] for i in range(sample)]
    synth_s = time.perf_counter() - start
    start = time.perf_counter()
    measurements = [measure(wave, data.sr) for wave, _, _ in clips]
    measure_s = time.perf_counter() - start
    verdicts = [judge_measurement(m, attrs) for m, (_, _, attrs) in zip(measurements, clips)]
    accuracy = {k: float(np.mean([v[k] for v in verdicts if k in v])) for k in sorted({k for v in verdicts for k in v})}
    return {
        "synth_ms_per_clip": 1000 * synth_s / sample,
        "measure_ms_per_clip": 1000 * measure_s / sample,
        "judge_accuracy": accuracy,
    }


def render_markdown(report: dict) -> str:
    r = report
    acc = " | ".join(f"{k} {v:.1%}" for k, v in r["in_memory"]["judge_accuracy"].items())
    return "\n".join(
        [
            "# SynthCaps generation speed",
            "",
            f"`{r['command']}` — {r['n']} clips of 2.0 s at 16 kHz (16-bit PCM wavs + CSV manifest), "
            f"{r['workers']} worker processes, on {r['cpus']} CPU cores (load average {r['load_avg_before']:.1f} "
            "before the run: the machine is shared, so the numbers are pessimistic).",
            "",
            "| quantity | value |",
            "| --- | ---: |",
            f"| wall time for {r['n']} clips | {r['write_s']:.1f} s |",
            f"| clips / s | {r['clips_per_s']:.1f} |",
            f"| target (under {TARGET_S:.0f} s) | {'met' if r['write_s'] < TARGET_S else 'NOT met'} |",
            f"| data written | {r['bytes'] / 2**20:.0f} MiB |",
            f"| in-memory synthesis, one process | {r['in_memory']['synth_ms_per_clip']:.2f} ms / clip |",
            f"| `measure`, one process | {r['in_memory']['measure_ms_per_clip']:.2f} ms / clip |",
            "",
            f"`judge` on {r['sample']} clean training clips: {acc}.",
            "",
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample", type=int, default=300, help="clips for the in-memory timings")
    p.add_argument("--keep", type=Path, default=None, help="write here and keep the clips")
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    write_s, size = time_cli_write(args.n, args.workers, args.seed, args.keep)
    report = {
        "command": f"python benchmarks/synthcaps_speed.py --n {args.n} --workers {args.workers}",
        "n": args.n,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg()[0],
        "write_s": write_s,
        "clips_per_s": args.n / write_s,
        "bytes": size,
        "target_s": TARGET_S,
        "target_met": write_s < TARGET_S,
        "sample": args.sample,
        "in_memory": time_in_memory(args.sample, args.seed),
        "platform": platform.platform(),
        "numpy": np.__version__,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "synthcaps_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "synthcaps_speed.md").write_text(render_markdown(report))
    print(render_markdown(report))


if __name__ == "__main__":
    main()
