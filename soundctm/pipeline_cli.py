"""``soundctm generate``: prompts → audio files (+ mel-spectrogram PNGs) with a SoundCTM pipeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundctm.cli_errors import CliError, HelpFormatter, Parser, one_line_warnings, report
from soundctm.pipeline import SAMPLERS, TEACHER_SOLVERS, bundled_models, synthcaps_summary

PROG = "soundctm generate"
DEFAULT_OUTPUT = "out.wav"
DEFAULT_MODEL_NAME = "synthcaps-tiny"


def description() -> str:
    return (f"Generate sound from text with a SoundCTM model.\n\nThe bundled model ({DEFAULT_MODEL_NAME}) is tiny. "
            f"{synthcaps_summary()}\n\nγ (--gamma) re-injects noise between CTM jumps, so it has no effect at "
            "--steps 1\nnor with --sampler teacher/score.")


def build_parser() -> Parser:
    p = Parser(prog=PROG, description=description(), formatter_class=HelpFormatter)
    p.add_argument("prompt", nargs="?", help="the text prompt (or use --prompts-file)")
    p.add_argument("--model", default=DEFAULT_MODEL_NAME,
                   help=f"a pipeline folder or a bundled model name ({', '.join(bundled_models())})")
    p.add_argument("--steps", type=int, default=1, help="CTM jumps, or ODE steps for --sampler teacher/score")
    p.add_argument("--gamma", type=float, default=0.0,
                   help="γ in [0, 1]: noise re-injected between jumps, 0 deterministic … 1 stochastic; "
                        "no effect at --steps 1")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale ω (default: the model's)")
    p.add_argument("--nu", type=float, default=1.0, help="ν-sampling weight (1: conditional only)")
    p.add_argument("--seed", type=int, default=None, help="seed of the noise (default: a random one, printed)")
    p.add_argument("--num-samples", type=int, default=1, help="clips per prompt")
    p.add_argument("--sampler", default="ctm", choices=SAMPLERS,
                   help="ctm: the student's jumps; teacher: the teacher's ODE; score: the student's own ODE")
    p.add_argument("--teacher-solver", default="heun", choices=TEACHER_SOLVERS,
                   help="ODE solver of --sampler teacher/score")
    p.add_argument("--sigmas", default=None, metavar="S0,S1,...",
                   help="custom noise levels, steps + 1 of them, descending (ODE samplers end at 0); "
                        "default: the Karras grid")
    p.add_argument("-o", "--output", default=None,
                   help=f"output audio file, single prompt: .wav, .flac, .ogg or .mp3 (default: {DEFAULT_OUTPUT})")
    p.add_argument("--spectrogram", default=None, help="also write a mel-spectrogram PNG here (single prompt)")
    p.add_argument("--prompts-file", default=None, help="one prompt per line; writes NNNN.wav into --out-dir")
    p.add_argument("--out-dir", default="generated", help="output folder for --prompts-file")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per batch with --prompts-file")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: on a terminal, once a run takes over a second)")
    return p


def read_prompts(args) -> list[str]:
    if args.prompts_file:
        given = [flag for flag, value in (("a positional prompt", args.prompt), ("-o/--output", args.output),
                                          ("--spectrogram", args.spectrogram)) if value is not None]
        if given:
            raise CliError(f"--prompts-file writes NNNN.wav into --out-dir: drop {' and '.join(given)}")
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
    from soundctm.pipeline import read_index

    try:
        config = read_index(model)
    except (OSError, ValueError):
        return 0.0, float("inf")
    return config.sigma_min, config.sigma_max


def check_output(path: Path) -> None:
    """Fail early, before any model is loaded, when an output cannot be written (missing folders are created,
    as ``Audio.save`` does)."""
    import os

    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CliError(f"output directory {parent} cannot be created ({err.strerror or err})") from None
    if not os.access(parent, os.W_OK):
        raise CliError(f"output directory {parent} is not writable")


def check_outputs(args) -> None:
    """The output paths: an audio suffix for -o, writable folders."""
    from soundctm.audio.io import audio_format

    if args.prompts_file:
        return check_output(Path(args.out_dir) / "0000.wav")
    try:
        audio_format(args.output)
    except ValueError as err:
        raise CliError(f"-o/--output: {err}") from None
    check_output(Path(args.output))
    if args.spectrogram:
        check_output(Path(args.spectrogram))


def gamma_note(args) -> str | None:
    """Why --gamma > 0 changes nothing here, or None."""
    if args.gamma > 0 and args.sampler != "ctm":
        return f"--gamma has no effect with --sampler {args.sampler} (it re-noises between CTM jumps only)"
    if args.gamma > 0 and args.steps == 1:
        return "--gamma has no effect at --steps 1 (it re-noises between jumps; use --steps 2 or more)"
    return None


def progress_bar(args, total: int):
    """A tqdm bar on stderr, or None: --progress on, --no-progress off, default on a terminal after 1 s."""
    from tqdm import tqdm

    if args.progress is False or (args.progress is None and not sys.stderr.isatty()):
        return None
    return tqdm(total=total, desc="generating", unit="step", file=sys.stderr, delay=0 if args.progress else 1.0,
                leave=False)


def check_args(args) -> list[str]:
    """Every cheap check, before the model loads; returns the prompts."""
    from soundctm.devices import check_device
    from soundctm.pipeline import check_generate_args, check_prompts, check_sigmas, resolve_model

    prompts = check_prompts(read_prompts(args))
    check_generate_args(args.steps, args.gamma, args.guidance, args.nu, args.num_samples, args.sampler, args.seed)
    args.model = resolve_model(args.model)
    check_device(args.device, "--device")
    args.sigmas = parse_sigmas(args.sigmas)
    if args.sigmas is not None:  # before the model loads, against its σ range when its index is readable
        check_sigmas(args.sigmas, args.steps, args.sampler, *sigma_range(args.model))
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {args.batch_size}")
    args.output = DEFAULT_OUTPUT if args.output is None and not args.prompts_file else args.output
    check_outputs(args)
    return prompts


def generate_one(pipe, prompt: str, args, kw: dict) -> list[Path]:
    """One prompt → ``--output`` (+ ``--spectrogram``), with a step bar on long runs."""
    bar = progress_bar(args, args.steps) if args.steps > 1 else None
    callback = None if bar is None else (lambda _: bar.update())
    try:
        audio = pipe.generate(prompt, seed=args.seed, callback=callback, **kw)
    finally:
        if bar is not None:
            bar.close()
    written = audio.save(args.output)
    if args.spectrogram:
        written.append(audio.save_spectrogram(args.spectrogram))
    info = audio.info
    print(f"wrote {', '.join(map(str, written))}  ({info['nfe']} NFE, {info['seconds']:.2f} s, "
          f"{info['real_time_factor']:.1f}x real time, seed {info['seed']})")
    return written


def generate_file(pipe, prompts: list[str], args, kw: dict) -> list[Path]:
    """``--prompts-file``: batches of prompts → ``--out-dir/NNNN.wav`` and ``prompts.txt``."""
    from soundctm.audio.io import save_audio

    out_dir, written = Path(args.out_dir), []
    batches = [prompts[i: i + args.batch_size] for i in range(0, len(prompts), args.batch_size)]
    bar = progress_bar(args, len(batches))
    for b, chunk in enumerate(batches):
        seed = None if args.seed is None else args.seed + b
        audio = pipe.generate(chunk, seed=seed, **kw)
        for j, wave in enumerate(audio.waveforms):
            k = b * args.batch_size * args.num_samples + j
            written.append(save_audio(out_dir / f"{k:04d}.wav", wave, audio.sample_rate))
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    (out_dir / "prompts.txt").write_text(
        "\n".join(f"{k:04d}.wav\t{p}" for k, p in enumerate(p for p in prompts for _ in range(args.num_samples))))
    print(f"wrote {len(written)} files to {out_dir}")
    return written


def run(args) -> list[Path]:
    import transformers

    from soundctm.pipeline import SoundCTM

    prompts = check_args(args)
    if gamma_note(args):
        print(f"{PROG}: note: {gamma_note(args)}", file=sys.stderr)
    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar for the text encoder
    pipe = SoundCTM.from_pretrained(args.model, device=args.device)
    kw = dict(steps=args.steps, gamma=args.gamma, guidance=args.guidance, nu=args.nu,
              num_samples=args.num_samples, sampler=args.sampler, teacher_solver=args.teacher_solver,
              sigmas=args.sigmas)
    if args.prompts_file:
        return generate_file(pipe, prompts, args, kw)
    return generate_one(pipe, prompts[0], args, kw)


def main(argv: list[str] | None = None) -> int:
    try:
        with one_line_warnings(PROG):
            run(build_parser().parse_args(argv))
    except SystemExit as stop:  # --help
        return int(stop.code or 0)
    except (CliError, ValueError, OSError) as err:
        return report(PROG, err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
