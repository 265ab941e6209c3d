"""End-to-end speed, side by side in one run: 1-step CTM vs the 40-step CFG teacher (text → waveform).

    python benchmarks/speed.py [--model DIR] [--repeats 3] [--threads 1] [--vocoders model,random:32,lines:2]

Times include text encoding (cached after the first call), sampling, VAE decode and Griffin-Lim, at batch 1 and
16, alternating the samplers so all see the same machine load; the decode alone (VAE, vocoder) is timed in the
same rounds. ``--vocoders`` repeats everything per Griffin-Lim setting (``model``: the folder's own,
``INIT:N``: phase init and iterations). Writes benchmarks/results/speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from soundctm.fileio import with_extension

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"ctm 1 step": dict(steps=1, sampler="ctm"), "ctm 4 steps γ=0": dict(steps=4, sampler="ctm"),
           "teacher heun 40 (CFG)": dict(steps=40, sampler="teacher")}


def time_once(pipe, prompts, **kw) -> tuple[float, dict]:
    t0 = time.perf_counter()
    audio = pipe.generate(prompts, seed=0, **kw)
    return time.perf_counter() - t0, audio.info


def time_decode(pipe, n: int) -> tuple[float, float]:
    """Seconds for the VAE decode and for the vocoder of ``n`` latents (fixed random latents)."""
    latents = torch.randn(n, *pipe.config.latent_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        t0 = time.perf_counter()
        mel = pipe.vae.decode(latents, pipe.config.n_frames)
        t1 = time.perf_counter()
        pipe.vocoder(mel)
        return t1 - t0, time.perf_counter() - t1


def vocoder_label(voc) -> str:
    return f"{getattr(voc, 'phase_init', '?')}:{getattr(voc, 'n_iter', '?')}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "soundctm" / "pretrained" / "synthcaps-tiny"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--vocoders", default="model", help="comma list of 'model' or INIT:N (e.g. random:32,lines:2)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from soundctm.pipeline import SoundCTM

    t0 = time.perf_counter()
    pipe = SoundCTM.from_pretrained(args.model)
    load_s = time.perf_counter() - t0
    from soundctm.audio.vocoder import GriffinLimVocoder

    own = pipe.vocoder
    vocoders = {}
    for spec in args.vocoders.split(","):
        if spec == "model":
            vocoders[f"{vocoder_label(own)} (model)"] = own
        else:
            init, n_iter = spec.split(":")
            vocoders[spec] = GriffinLimVocoder(pipe.vae.config.mel, n_iter=int(n_iter), phase_init=init)
    rows = []
    for b in (int(x) for x in args.batches.split(",")):
        prompts = [f"a loud beep sounding {['once', 'twice', 'three times'][i % 3]}" for i in range(b)]
        for kw in CONFIGS.values():  # warm-up: text cache, allocator
            time_once(pipe, prompts[:1], **kw)
        times = {(v, name): [] for v in vocoders for name in [*CONFIGS, "vae decode", "vocoder"]}
        info = {}
        for _ in range(args.repeats):
            for v, voc in vocoders.items():
                pipe.vocoder = voc
                for name, kw in CONFIGS.items():
                    s, info[name] = time_once(pipe, prompts, **kw)
                    times[v, name].append(s)
                vae_s, voc_s = time_decode(pipe, b)
                times[v, "vae decode"].append(vae_s)
                times[v, "vocoder"].append(voc_s)
        for v in vocoders:
            base = statistics.median(times[v, "teacher heun 40 (CFG)"])
            for name in [*CONFIGS, "vae decode", "vocoder"]:
                med = statistics.median(times[v, name])
                rows.append({"batch": b, "vocoder": v, "method": name, "nfe": info[name]["nfe"] if name in info
                             else 0, "seconds": med, "speedup_vs_teacher": base / med,
                             "real_time_factor": 2.0 * b / med})
                print(rows[-1], flush=True)
    pipe.vocoder = own
    lines = ["# End-to-end generation speed (text → 2 s waveform), this CPU", "",
             f"{args.threads} thread(s), median of {args.repeats} alternating runs; model load {load_s:.1f} s; "
             "real-time factor = seconds of audio per second of compute. Vocoder = Griffin-Lim phase init : "
             "iterations; the decode rows time the VAE and the vocoder alone (part of every other row).", "",
             "| batch | vocoder | method | NFE | seconds | speed-up vs teacher | real-time factor |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['vocoder']} | {r['method']} | {r['nfe'] or '—'} | {r['seconds']:.3f} | "
              + (f"{r['speedup_vs_teacher']:.1f}× | {r['real_time_factor']:.1f} |" if r["nfe"] else "— | — |")
              for r in rows]
    out = Path(args.out)
    command = "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with_extension(out, ".json").write_text(json.dumps({"load_seconds": load_s, "command": command, "rows": rows},
                                                       indent=2) + "\n")
    with_extension(out, ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
