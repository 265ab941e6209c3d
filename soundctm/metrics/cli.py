"""``soundctm eval``: generate clips for a prompt set with a pipeline folder and score them.

    soundctm eval --model synthcaps-tiny --prompts synthcaps-heldout --n 64 \\
        --metrics fd_synth,attr,judge --steps 1 --gamma 0 --sampler ctm --out results.json

Prompts: ``synthcaps-heldout``, ``synthcaps-heldout-combo`` (SynthCaps held-out prompts with attributes and their
real clips), a SynthCaps manifest ``.csv`` (captions, attributes, wav files) or a text file (one caption a line;
only fd_synth, is and clap apply). Metrics: see ``soundctm.metrics.synthcaps_eval``; ``clap`` needs ``--clap PATH``
(a local transformers CLAP folder). Writes the JSON to ``--out`` and a markdown table next to it (``.md``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from soundctm.cli_errors import CliError, Parser, one_line_warnings, report
from soundctm.metrics.synthcaps_eval import ATTRIBUTE_METRICS, METRICS, PROMPT_SETS

MAX_N = 10000


def build_parser() -> Parser:
    p = Parser(prog="soundctm eval", description="Generate clips for a prompt set and score them.")
    p.add_argument("--model", required=True,
                   help="a pipeline folder (model_index.json, vae/, student/ [, teacher/]) or a bundled model name")
    p.add_argument("--prompts", default="synthcaps-heldout",
                   help=f"{' | '.join(PROMPT_SETS)} | a SynthCaps manifest .csv | a text file (one prompt a line)")
    p.add_argument("--n", type=int, default=None, help="number of prompts (default 64 for the SynthCaps sets; "
                   "all lines of a file)")
    p.add_argument("--seed", type=int, default=0, help="prompt-set seed and generation seed")
    p.add_argument("--metrics", default=None, help=f"comma-separated subset of {','.join(METRICS)} "
                   "(default: fd_synth,attr,judge with attributes, else fd_synth; plus clap with --clap)")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--gamma", type=float, default=0.0)
    p.add_argument("--sampler", default="ctm", choices=("ctm", "teacher", "score"))
    p.add_argument("--teacher-solver", default="heun", choices=("heun", "euler", "dpmpp_2m"))
    p.add_argument("--guidance", type=float, default=None, help="CFG scale ω (default: the model's)")
    p.add_argument("--nu", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--classifier", default=None, help="SynthCaps classifier folder (default: the bundled one)")
    p.add_argument("--clap", default=None, help="local transformers CLAP folder (enables the clap metric)")
    p.add_argument("--out", default="results.json", help="JSON output; a markdown table is written next to it")
    return p


def parse_metrics(spec: str | None, has_attrs: bool, has_clap: bool) -> list[str]:
    """The metric list: validated names, defaults by prompt kind, clap only with a CLAP folder."""
    if spec is None:
        names = ["fd_synth", "attr", "judge"] if has_attrs else ["fd_synth"]
        return names + (["clap"] if has_clap else [])
    names = [m.strip() for m in spec.split(",") if m.strip()]
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise CliError(f"--metrics: expected a comma-separated subset of {','.join(METRICS)}, got {spec!r}")
    if "clap" in names and not has_clap:
        raise CliError("--metrics: clap needs --clap PATH (a local transformers CLAP folder)")
    needs = [m for m in names if m in ATTRIBUTE_METRICS]
    if needs and not has_attrs:
        raise CliError(f"--metrics: {','.join(needs)} need prompts with attributes "
                       f"({', '.join(PROMPT_SETS)} or a SynthCaps manifest .csv)")
    return list(dict.fromkeys(names))


def validate_args(args) -> None:
    """Raise CliError naming the first bad argument (the cheap checks, before loading anything)."""
    if args.n is not None and not 2 <= args.n <= MAX_N:
        raise CliError(f"--n: expected 2 <= n <= {MAX_N}, got {args.n}")
    if not 1 <= args.steps <= 1000:
        raise CliError(f"--steps: expected 1 <= steps <= 1000, got {args.steps}")
    if not (math.isfinite(args.gamma) and 0.0 <= args.gamma <= 1.0):
        raise CliError(f"--gamma: expected 0 <= gamma <= 1, got {args.gamma}")
    if args.guidance is not None and not (math.isfinite(args.guidance) and args.guidance >= 0):
        raise CliError(f"--guidance: expected a finite number >= 0, got {args.guidance}")
    if not (math.isfinite(args.nu) and args.nu >= 0):
        raise CliError(f"--nu: expected a finite number >= 0, got {args.nu}")
    if args.seed < 0:
        raise CliError(f"--seed: expected >= 0, got {args.seed}")
    if not 1 <= args.batch_size <= 256:
        raise CliError(f"--batch-size: expected 1 <= batch-size <= 256, got {args.batch_size}")
    from soundctm.pipeline import resolve_model

    try:
        args.model = resolve_model(args.model)
    except FileNotFoundError as err:
        raise CliError(f"--model: {err}") from None
    if not (args.model / "model_index.json").is_file():
        raise CliError(f"--model: {str(args.model)!r} is not a pipeline folder (no model_index.json)")
    if args.clap is not None and not Path(args.clap).is_dir():
        raise CliError(f"--clap: {args.clap!r} is not a local folder")
    if args.classifier is not None and not (Path(args.classifier) / "config.json").is_file():
        raise CliError(f"--classifier: {args.classifier!r} is not a classifier folder (no config.json)")
    if args.prompts not in PROMPT_SETS and not Path(args.prompts).is_file():
        raise CliError(f"--prompts: expected one of {', '.join(PROMPT_SETS)} or an existing file, got {args.prompts!r}")
    if not str(args.out).endswith(".json"):
        raise CliError(f"--out: expected a path ending in .json, got {args.out!r}")


def run_eval(args, metrics: list[str], prompts) -> dict:
    """Generate, embed, score: the results dict written to ``--out``."""
    import torch

    from soundctm.metrics.embedders import build_embedder
    from soundctm.metrics.synthcaps_classifier import build_synthcaps_embedder
    from soundctm.metrics.synthcaps_eval import evaluate_clips, fd_floor, generate_batched
    from soundctm.pipeline import SoundCTM

    torch.set_num_threads(1)
    embedder = build_synthcaps_embedder(args.classifier) if set(metrics) - {"clap"} else None
    clap = build_embedder("clap", args.clap) if "clap" in metrics else None
    pipe = SoundCTM.from_pretrained(args.model)
    gen = generate_batched(pipe, prompts.captions, args.batch_size, args.seed, steps=args.steps, gamma=args.gamma,
                           guidance=args.guidance, nu=args.nu, sampler=args.sampler,
                           teacher_solver=args.teacher_solver)
    t0 = time.perf_counter()
    scores: dict = {}
    if embedder is not None:
        generated = embedder.embed_and_predict(gen.waveforms, gen.sample_rate)
        reference = None
        if {"fd_synth", "kl"} & set(metrics):
            ref_waves, ref_sr = prompts.reference()
            reference = embedder.embed_and_predict(ref_waves, ref_sr)
        scores.update(evaluate_clips(generated, gen.waveforms, gen.sample_rate, prompts, metrics, reference))
        if "fd_synth" in metrics:
            scores["fd_synth_floor"] = fd_floor(embedder, reference, prompts.split, args.seed + 1)
    if "clap" in metrics:
        from soundctm.metrics.scores import clap_score_of_audio

        scores["clap"] = clap_score_of_audio(clap, prompts.captions, gen.waveforms, gen.sample_rate)
    return {
        "model": str(args.model),
        "prompts": prompts.name,
        "n": len(prompts),
        "seed": args.seed,
        "settings": {"sampler": args.sampler, "steps": args.steps, "gamma": args.gamma,
                     "guidance": pipe.config.guidance if args.guidance is None else args.guidance, "nu": args.nu,
                     "teacher_solver": args.teacher_solver if args.sampler != "ctm" else None},
        "generation": {"nfe": gen.nfe, "seconds": gen.seconds, "seconds_per_clip": gen.seconds / len(prompts),
                       "real_time_factor": gen.real_time_factor},
        "metrics": scores,
        "scoring_seconds": time.perf_counter() - t0,
    }


def render_markdown(results: dict) -> str:
    """A headline table and one per-attribute table per accuracy metric."""
    from soundctm.metrics.synthcaps_eval import headline

    s, g = results["settings"], results["generation"]
    lines = [f"# soundctm eval: {results['model']}", "",
             f"{results['n']} prompts from `{results['prompts']}` (seed {results['seed']}); sampler {s['sampler']}, "
             f"{s['steps']} steps, γ = {s['gamma']}, ω = {s['guidance']}, ν = {s['nu']}"
             + (f", solver {s['teacher_solver']}" if s["teacher_solver"] else "") + ".", "",
             "| metric | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.4f} |" for k, v in headline(results["metrics"]).items()]
    lines += [f"| NFE per clip | {g['nfe']} |", f"| seconds per clip | {g['seconds_per_clip']:.3f} |",
              f"| real-time factor | {g['real_time_factor']:.2f} |"]
    for name in ("attr", "judge"):
        if name in results["metrics"]:
            m = results["metrics"][name]
            keys = list(m["accuracy"])
            lines += ["", f"**{name}** per attribute (headline mean over {', '.join(m['keys'])}; "
                      f"all correct: {100 * m['all_correct']:.1f}%)", "",
                      "| " + " | ".join(f"{k} (n={m['support'][k]})" for k in keys) + " |",
                      "|" + " ---: |" * len(keys),
                      "| " + " | ".join(f"{100 * m['accuracy'][k]:.1f}%" for k in keys) + " |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """soundctm eval entry point; returns an exit code (2 on bad input)."""
    from soundctm.metrics.synthcaps_eval import load_prompt_set

    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        validate_args(args)
        n = args.n if args.n is not None or args.prompts not in PROMPT_SETS else 64
        prompts = load_prompt_set(args.prompts, n, args.seed)
        if len(prompts) < 2:
            raise CliError(f"--prompts: need at least 2 prompts, got {len(prompts)}")
        metrics = parse_metrics(args.metrics, prompts.attrs is not None, args.clap is not None)
    except (CliError, ValueError) as e:
        return report("soundctm eval", e)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    try:
        with one_line_warnings("soundctm eval"):
            results = run_eval(args, metrics, prompts)
    except ValueError as e:  # a corrupt model folder, a bad classifier or CLAP folder (before generating)
        return report("soundctm eval", e)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(render_markdown(results))
    print(render_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
