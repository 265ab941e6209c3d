"""``soundctm generate``: prompts → wav files (+ mel-spectrogram PNGs) with a SoundCTM pipeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundctm.pipeline import DEFAULT_MODEL, SAMPLERS, TEACHER_SOLVERS


class CliError(Exception):
    """A bad command line: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CliError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="soundctm generate", description="Generate sound from text with a SoundCTM model.")
    p.add_argument("prompt", nargs="?", help="the text prompt (or use --prompts-file)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the bundled model)")
    p.add_argument("--steps", type=int, default=1, help="CTM jumps, or ODE steps for --sampler teacher/score")
    p.add_argument("--gamma", type=float, default=0.0, help="γ in [0, 1]: 0 deterministic … 1 stochastic")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale ω (default: the model's)")
    p.add_argument("--nu", type=float, default=1.0, help="ν-sampling weight (1: conditional only)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--num-samples", type=int, default=1, help="clips per prompt")
    p.add_argument("--sampler", default="ctm", choices=SAMPLERS)
    p.add_argument("--teacher-solver", default="heun", choices=TEACHER_SOLVERS)
    p.add_argument("--sigmas", default=None, metavar="S0,S1,...",
                   help="custom noise levels, steps + 1 of them, descending (ODE samplers end at 0); "
                        "default: the Karras grid")
    p.add_argument("-o", "--output", default="out.wav", help="output wav (single prompt)")
    p.add_argument("--spectrogram", default=None, help="also write a mel-spectrogram PNG here (single prompt)")
    p.add_argument("--prompts-file", default=None, help="one prompt per line; writes into --out-dir")
    p.add_argument("--out-dir", default="generated", help="output folder for --prompts-file")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per batch with --prompts-file")
    p.add_argument("--device", default="cpu")
    return p


def read_prompts(args) -> list[str]:
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise CliError(f"--prompts-file {path} does not exist")
        prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not prompts:
            raise CliError(f"--prompts-file {path} holds no prompt")
        return prompts
    if args.prompt is None:
        raise CliError("give a prompt or --prompts-file")
    return [args.prompt]


def parse_sigmas(text: str | None, flag: str = "--sigmas") -> list[float] | None:
    """A ``flag`` value of comma-separated noise levels as numbers (``None`` stays ``None``); their range is checked
    against the model's by ``check_sigmas``. Raises ``ValueError`` naming ``flag``."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, e.g. 80,2.5,0.002; got {text!r}") from None


def sigma_range(model: Path) -> tuple[float, float]:
    """The model's [σ_min, σ_max] from its ``model_index.json`` (unbounded when unreadable: loading reports that)."""
    import json

    from soundctm.pipeline import INDEX_FILE, PipelineConfig

    try:
        config = PipelineConfig.from_dict(json.loads((model / INDEX_FILE).read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return 0.0, float("inf")
    return config.sigma_min, config.sigma_max


def check_output(path: Path) -> None:
    """Fail early, before any model is loaded, when an output cannot be written."""
    import os

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CliError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise CliError(f"output directory {parent} is not writable")


def run(args) -> list[Path]:
    from tqdm.auto import tqdm

    from soundctm.pipeline import SoundCTM, check_generate_args, check_prompts, check_sigmas

    prompts = read_prompts(args)
    check_prompts(prompts)
    check_generate_args(args.steps, args.gamma, args.guidance, args.nu, args.num_samples, args.sampler, args.seed)
    sigmas = parse_sigmas(args.sigmas)
    if sigmas is not None:  # before the model loads, against its σ range when its index is readable
        check_sigmas(sigmas, args.steps, args.sampler, *sigma_range(Path(args.model)))
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.prompts_file:
        out_dir = Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        check_output(out_dir / "x.wav")
    else:
        check_output(Path(args.output))
        if args.spectrogram:
            check_output(Path(args.spectrogram))
    pipe = SoundCTM.from_pretrained(args.model, device=args.device)
    kw = dict(steps=args.steps, gamma=args.gamma, guidance=args.guidance, nu=args.nu,
              num_samples=args.num_samples, sampler=args.sampler, teacher_solver=args.teacher_solver,
              sigmas=sigmas)
    if not args.prompts_file:
        audio = pipe.generate(prompts[0], seed=args.seed, **kw)
        written = audio.save(args.output)
        if args.spectrogram:
            written.append(audio.save_spectrogram(args.spectrogram))
        info = audio.info
        print(f"wrote {', '.join(map(str, written))}  ({info['nfe']} NFE, {info['seconds']:.2f} s, "
              f"{info['real_time_factor']:.1f}x real time, seed {info['seed']})")
        return written
    written = []
    batches = [prompts[i: i + args.batch_size] for i in range(0, len(prompts), args.batch_size)]
    for b, chunk in enumerate(tqdm(batches, desc="generating", unit="batch")):
        seed = None if args.seed is None else args.seed + b
        audio = pipe.generate(chunk, seed=seed, **kw)
        for j, wave in enumerate(audio.waveforms):
            k = b * args.batch_size * args.num_samples + j
            from soundctm.audio.io import save_audio

            written.append(save_audio(Path(args.out_dir) / f"{k:04d}.wav", wave, audio.sample_rate))
    (Path(args.out_dir) / "prompts.txt").write_text(
        "\n".join(f"{k:04d}.wav\t{p}" for k, p in enumerate(p for p in prompts for _ in range(args.num_samples))))
    print(f"wrote {len(written)} files to {args.out_dir}")
    return written


def main(argv: list[str] | None = None) -> int:
    try:
        run(build_parser().parse_args(argv))
    except (CliError, ValueError, FileNotFoundError, OSError) as err:
        print(f"soundctm generate: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
