"""``soundctm demo``: a local gradio page to try a SoundCTM model — prompt, steps, γ, ω, seed — and compare
1-step CTM, N-step CTM and the teacher on the same prompt and noise.

The handlers (``parse_request``, ``generate_clips``, ``compare_samplers``) are plain functions of a pipeline and
the widget values, so they are tested without a browser; ``build_app`` only wires them to widgets.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from soundctm.cli_errors import CliError, Parser, report
from soundctm.pipeline import PromptWarning, bundled_models, synthcaps_summary

log = logging.getLogger(__name__)

MAX_UI_STEPS = 16
MAX_UI_SAMPLES = 4
MAX_UI_GUIDANCE = 10.0
MAX_PROMPT_CHARS = 500
# label shown in the UI -> pipeline sampler name
SAMPLER_LABELS: dict[str, str] = {
    "CTM (γ-sampling)": "ctm",
    "teacher (ODE, for comparison)": "teacher",
    "student score (ODE)": "score",
}
DEFAULT_SAMPLER = "CTM (γ-sampling)"
# One generation at a time per process: the text tokenizer and pyplot are not thread-safe, and torch already
# uses every intra-op thread it is given. The queue's concurrency limit only lets requests wait in parallel.
GENERATION_LOCK = threading.Lock()


@dataclass(frozen=True)
class Request:
    """One checked generation request (the widget values after ``parse_request``)."""

    prompt: str
    steps: int
    gamma: float
    guidance: float
    seed: int | None  # None: draw a random seed
    num_samples: int
    sampler: str  # pipeline name: "ctm" | "teacher" | "score"


@dataclass
class Clip:
    """One generated clip as the page shows it."""

    sample_rate: int
    wave: np.ndarray  # [T] float32 in [-1, 1]
    spectrogram: np.ndarray  # [H, W, 3] uint8 mel-spectrogram picture
    label: str


@dataclass
class Generation:
    """The clips of one request, the pipeline's ``info`` (seed, NFE, seconds, …) and a one-line timing text."""

    clips: list[Clip]
    info: dict
    timing: str
    request: Request | None = field(default=None, repr=False)


# ---- widget values -> Request (ValueError names the field and its range) ----

def _as_int(value, name: str, lo: int, hi: int) -> int:
    """An integral number in [lo, hi] (sliders and number boxes send floats such as 3.0)."""
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or float(value) != int(value) or not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be a whole number in [{lo}, {hi}], got {value!r}")
    return int(value)


def _as_float(value, name: str, lo: float, hi: float) -> float:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or not lo <= float(value) <= hi:
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def check_prompt(prompt) -> str:
    """Non-empty text of at most ``MAX_PROMPT_CHARS`` characters."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be non-empty text, e.g. 'a high beep sounding twice'")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt must be at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}")
    return prompt.strip()


def check_seed(seed, random_seed: bool) -> int | None:
    """None when ``random_seed`` is ticked, else an integer in [0, 2³¹ − 1]."""
    if random_seed:
        return None
    if seed is None or seed == "":
        raise ValueError("seed must be a whole number in [0, 2147483647] (or tick 'random seed')")
    return _as_int(seed, "seed", 0, 2**31 - 1)


def check_sampler(sampler: str) -> str:
    """A UI label or a pipeline sampler name → the pipeline name."""
    if sampler in SAMPLER_LABELS:
        return SAMPLER_LABELS[sampler]
    if sampler in SAMPLER_LABELS.values():
        return sampler
    raise ValueError(f"sampler must be one of {list(SAMPLER_LABELS)}, got {sampler!r}")


def parse_request(prompt, steps, gamma, guidance, seed, random_seed, num_samples, sampler) -> Request:
    """Check the widget values (they may come from the page or from an API client) and build a Request."""
    return Request(prompt=check_prompt(prompt), steps=_as_int(steps, "steps", 1, MAX_UI_STEPS),
                   gamma=_as_float(gamma, "gamma", 0.0, 1.0),
                   guidance=_as_float(guidance, "guidance", 0.0, MAX_UI_GUIDANCE),
                   seed=check_seed(seed, bool(random_seed)),
                   num_samples=_as_int(num_samples, "num_samples", 1, MAX_UI_SAMPLES),
                   sampler=check_sampler(sampler))


# ---- pipeline -> what the page shows ----

def spectrogram_image(wave: np.ndarray, sample_rate: int, title: str = "") -> np.ndarray:
    """Mel-spectrogram picture ``[H, W, 3]`` uint8 of one waveform ``[T]`` (the PNG of ``save_mel_png``)."""
    from PIL import Image

    from soundctm.plotting import save_mel_png

    with tempfile.TemporaryDirectory(prefix="soundctm-demo-") as tmp:
        path = save_mel_png(wave, sample_rate, Path(tmp) / "mel.png", title)
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))


def describe(info: dict) -> str:
    """'CTM · 1 step · γ 0.00 · ω 3.5' — what produced a clip."""
    name = {"ctm": "CTM", "teacher": "teacher", "score": "student score"}[info["sampler"]]
    steps = f"{info['steps']} step{'s' if info['steps'] != 1 else ''}"
    gamma = f" · γ {info['gamma']:.2f}" if info["sampler"] == "ctm" and info["steps"] > 1 else ""
    return f"{name} · {steps}{gamma} · ω {info['guidance']:g}"


def gamma_note(info: dict) -> str | None:
    """Why the γ a clip was asked with changed nothing, or None."""
    if info["gamma"] > 0 and info["sampler"] != "ctm":
        return "γ has no effect with an ODE sampler"
    if info["gamma"] > 0 and info["steps"] == 1:
        return "γ has no effect at 1 step"
    return None


def format_timing(info: dict, notes: list[str] = ()) -> str:
    """Markdown: wall time (ms), network evaluations per clip, real-time factor, seed; then a note per line
    (γ that cannot act, a prompt the model does not know)."""
    line = (f"**{describe(info)}** — {info['seconds'] * 1000:.0f} ms · {info['nfe']} NFE per clip · "
            f"{info['real_time_factor']:.1f}× real time · seed {info['seed']}")
    gamma = gamma_note(info)
    return "\n\n".join([line + (f" · *{gamma}*" if gamma else ""), *(f"⚠ {n}" for n in notes)])


def generate_clips(pipe, request: Request, teacher_solver: str = "heun") -> Generation:
    """Run ``pipe.generate`` for a Request and draw a spectrogram per clip; a ``PromptWarning`` becomes a note."""
    if request.sampler == "teacher" and not pipe.has_teacher:
        raise ValueError("sampler 'teacher' is not available: this model was saved without its teacher")
    with GENERATION_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PromptWarning)
        audio = pipe.generate(request.prompt, steps=request.steps, gamma=request.gamma, guidance=request.guidance,
                              seed=request.seed, num_samples=request.num_samples, sampler=request.sampler,
                              teacher_solver=teacher_solver)
        label = describe(audio.info)
        clips = [Clip(audio.sample_rate, w, spectrogram_image(w, audio.sample_rate, f"{label} · #{i}"),
                      f"#{i} {label}") for i, w in enumerate(audio.waveforms)]
    notes = [str(w.message) for w in caught if issubclass(w.category, PromptWarning)]
    for w in caught:
        if not issubclass(w.category, PromptWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return Generation(clips, audio.info, format_timing(audio.info, notes), request)


def comparison_requests(pipe, request: Request) -> list[Request]:
    """The same prompt and seed as CTM 1 step, CTM ``request.steps`` steps, and the teacher (its own step count)."""
    seed = request.seed if request.seed is not None else int(np.random.default_rng().integers(0, 2**31 - 1))
    base = Request(request.prompt, 1, request.gamma, request.guidance, seed, 1, "ctm")
    runs = [base, replace(base, steps=request.steps)]
    if pipe.has_teacher:
        runs.append(replace(base, steps=pipe.config.teacher_steps, sampler="teacher"))
    return runs


def compare_samplers(pipe, request: Request) -> list[Generation]:
    """Side-by-side: 1-step CTM, N-step CTM and the teacher from the same x_T (one clip each)."""
    return [generate_clips(pipe, r) for r in comparison_requests(pipe, request)]


# ---- the page ----

INTRO = """# SoundCTM — text to sound in one step
A Consistency Trajectory Model jumps along its teacher's probability-flow ODE: **1 step** already gives a clip,
more steps refine it. **γ** sets how much fresh noise each extra step re-injects (0: deterministic jumps,
1: consistency-model style), so at 1 step it has no effect. **ω** is the classifier-free guidance scale.
*Compare* runs the same prompt and seed at 1 step, at N steps and with the teacher."""


def knowledge(pipe) -> str:
    """Markdown: what the model was trained on, so a user knows which prompts it can follow."""
    if pipe.training_data == "synthcaps":
        return "**What this model knows.** " + synthcaps_summary().replace("\n", " ")
    if pipe.training_data:
        return f"**Trained on** `{pipe.training_data}`: prompts like its captions work best."
    return "*This model does not record what it was trained on.*"


def pcm16(wave: np.ndarray) -> np.ndarray:
    """Float waveform in [−1, 1] → int16 PCM (what the page's wav player receives)."""
    return np.round(np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)


def _clip_update(gr, clip: Clip | None) -> list:
    """(audio, image) updates showing one clip, or hiding the slot when ``clip`` is None."""
    if clip is None:
        return [gr.update(value=None, visible=False), gr.update(value=None, visible=False)]
    return [gr.update(value=(clip.sample_rate, pcm16(clip.wave)), visible=True, label=clip.label),
            gr.update(value=clip.spectrogram, visible=True)]


def generation_outputs(gr, gen: Generation) -> list:
    """Outputs of *Generate*: ``MAX_UI_SAMPLES`` (audio, image) slots, the timing line, the seed used."""
    clips = gen.clips + [None] * (MAX_UI_SAMPLES - len(gen.clips))
    return [u for c in clips for u in _clip_update(gr, c)] + [gen.timing, gen.info["seed"]]


def comparison_outputs(gr, gens: list[Generation]) -> list:
    """Outputs of *Compare*: three (audio, image, timing) columns, the seed used, and a switch to its tab."""
    out = []
    for g in gens + [None] * (3 - len(gens)):
        timing = g.timing if g is not None else "*this model has no teacher to compare with*"
        out += [*_clip_update(gr, g.clips[0] if g is not None else None), timing]
    return [*out, gens[0].info["seed"], gr.Tabs(selected="compare")]


def _audio_slot(gr, elem_id: str, label: str, visible: bool):
    return gr.Audio(type="numpy", interactive=False, visible=visible, elem_id=elem_id, label=label,
                    buttons=["download"])


def _image_slot(gr, elem_id: str, visible: bool):
    return gr.Image(type="numpy", format="png", interactive=False, visible=visible, elem_id=elem_id,
                    label="mel spectrogram", show_label=False, buttons=["download", "fullscreen"])


def _friendly(gr, fn):
    """Run a handler; bad input → a gr.Error modal with the message, anything else → a short failure note."""
    @functools.wraps(fn)
    def run(*args):
        try:
            return fn(*args)
        except ValueError as err:
            raise gr.Error(str(err), title="Check the inputs", print_exception=False) from None
        except Exception as err:  # noqa: BLE001 — the page shows a message, the log keeps the traceback
            log.exception("demo: generation failed")
            raise gr.Error(f"generation failed: {type(err).__name__}: {err}", print_exception=False) from None
    return run


def _output_tabs(gr):
    """The *Samples* tab (timing line, ``MAX_UI_SAMPLES`` audio + image slots) and the *Compare* tab (three
    audio + image + timing columns): ``(tabs, timing, slots, compare_slots)``."""
    with gr.Tabs(selected="samples") as tabs:
        with gr.Tab("Samples", id="samples"):
            timing = gr.Markdown(elem_id="timing")
            slots = []
            with gr.Row():
                for i in range(MAX_UI_SAMPLES):
                    with gr.Column(min_width=240):
                        slots += [_audio_slot(gr, f"audio-{i}", "audio", i == 0),
                                  _image_slot(gr, f"spectrogram-{i}", i == 0)]
        with gr.Tab("Compare", id="compare"):
            cmp_slots = []
            with gr.Row():
                for i, name in enumerate(("1 step", "N steps", "teacher")):
                    with gr.Column(min_width=240):
                        cmp_slots += [_audio_slot(gr, f"compare-audio-{i}", name, True),
                                      _image_slot(gr, f"compare-spectrogram-{i}", True),
                                      gr.Markdown(elem_id=f"compare-timing-{i}")]
    return tabs, timing, slots, cmp_slots


def build_app(pipe, model_name: str = "", concurrency_limit: int = 1, max_queue: int = 16):
    """The gradio Blocks page wired to ``pipe`` (queue: ``concurrency_limit`` parallel generations)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from soundctm.data.synthcaps import example_prompts

    def on_generate(prompt, steps, gamma, guidance, seed, random_seed, num_samples, sampler):
        req = parse_request(prompt, steps, gamma, guidance, seed, random_seed, num_samples, sampler)
        return generation_outputs(gr, generate_clips(pipe, req))

    def on_compare(prompt, steps, gamma, guidance, seed, random_seed):
        req = parse_request(prompt, steps, gamma, guidance, seed, random_seed, 1, "ctm")
        return comparison_outputs(gr, compare_samplers(pipe, req))

    with gr.Blocks(title="SoundCTM demo", analytics_enabled=False) as app:
        gr.Markdown(INTRO + (f"\n\nModel: `{model_name}`" if model_name else ""))
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox(label="prompt", lines=2, max_lines=4, elem_id="prompt",
                                    placeholder="e.g. a loud high beep sounding twice")
                with gr.Row():
                    steps = gr.Slider(1, MAX_UI_STEPS, value=1, step=1, label="steps", elem_id="steps")
                    gamma = gr.Slider(0.0, 1.0, value=0.0, step=0.05, elem_id="gamma",
                                      label="γ (noise re-injected per step; none at 1 step)")
                    guidance = gr.Slider(0.0, MAX_UI_GUIDANCE, value=float(pipe.config.guidance), step=0.5,
                                         label="guidance ω", elem_id="guidance")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, minimum=0, label="seed", elem_id="seed")
                    random_seed = gr.Checkbox(value=False, label="random seed", elem_id="random-seed")
                    num_samples = gr.Slider(1, MAX_UI_SAMPLES, value=1, step=1, label="samples",
                                            elem_id="num-samples")
                sampler = gr.Radio(list(SAMPLER_LABELS), value=DEFAULT_SAMPLER, label="sampler", elem_id="sampler")
                with gr.Row():
                    run_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    cmp_btn = gr.Button("Compare: 1 step / N steps / teacher", elem_id="compare")
            with gr.Column(scale=1):
                gr.Examples([[p] for p in example_prompts(8, seed=0)], inputs=[prompt], label="SynthCaps examples")
                gr.Markdown(knowledge(pipe), elem_id="knowledge")
        tabs, timing, slots, cmp_slots = _output_tabs(gr)
        inputs = [prompt, steps, gamma, guidance, seed, random_seed, num_samples, sampler]
        run_btn.click(_friendly(gr, on_generate), inputs, [*slots, timing, seed], api_name="generate")
        prompt.submit(_friendly(gr, on_generate), inputs, [*slots, timing, seed], api_name=False)
        cmp_btn.click(_friendly(gr, on_compare), inputs[:6], [*cmp_slots, seed, tabs], api_name="compare")
    app.queue(max_size=max_queue, default_concurrency_limit=concurrency_limit)
    return app


# ---- command line ----

def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="soundctm demo", description="Start the local gradio demo of a SoundCTM model.")
    p.add_argument("--model", default="synthcaps-tiny",
                   help=f"a pipeline folder or a bundled model name ({', '.join(bundled_models())}; "
                        "default: synthcaps-tiny)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps (default: cpu)")
    p.add_argument("--concurrency", type=int, default=1, help="generations run in parallel (queue limit)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    return p


def check_args(args) -> None:
    if not 1 <= args.port <= 65535:
        raise CliError(f"--port must be in [1, 65535], got {args.port}")
    if not 1 <= args.concurrency <= 16:
        raise CliError(f"--concurrency must be in [1, 16], got {args.concurrency}")
    if not 1 <= args.threads <= 256:
        raise CliError(f"--threads must be in [1, 256], got {args.threads}")


def launch(app, host: str = "127.0.0.1", port: int | None = None, block: bool = True):
    """Serve ``app`` on host:port (no share link, no SSR node server, no API-docs telemetry)."""
    return app.launch(server_name=host, server_port=port, share=False, ssr_mode=False, prevent_thread_lock=not block,
                      show_error=False, quiet=not block, footer_links=["api"])


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        args = build_parser().parse_args(argv)
        check_args(args)
        import torch

        from soundctm.devices import check_device
        from soundctm.pipeline import SoundCTM

        check_device(args.device, "--device")
        torch.set_num_threads(args.threads)
        pipe = SoundCTM.from_pretrained(args.model, device=args.device)
    except (CliError, ValueError, OSError) as err:
        return report("soundctm demo", err)
    app = build_app(pipe, model_name=Path(args.model).name, concurrency_limit=args.concurrency)
    try:
        launch(app, args.host, args.port)
    except OSError as err:  # port in use, address not available
        return report("soundctm demo", err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
