"""Inference: text → text encoder → sampler (CTM γ-sampling, teacher ODE, or the student's own score) →
latent → VAE decode → mel → vocoder → waveform.

    from soundctm import SoundCTM
    pipe = SoundCTM.from_pretrained("synthcaps-tiny")   # a bundled name, or a pipeline folder
    audio = pipe.generate("a high beep sounding twice", steps=1, gamma=0.0, seed=0)
    audio.save("beep.wav")                               # .wav, .flac, .ogg or .mp3
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from soundctm.cli_errors import first_line
from soundctm.core import samplers, schedule
from soundctm.core.guidance import classifier_free_guidance
from soundctm.core.precond import CTMPrecond, EDMDenoiser
from soundctm.devices import check_device

INDEX_FILE = "model_index.json"
FORMAT = "soundctm-pipeline"
PROVENANCE_FILE = "provenance.json"
BUNDLED_DIR = Path(__file__).resolve().parent / "pretrained"
DEFAULT_MODEL = BUNDLED_DIR / "synthcaps-tiny"
SAMPLERS = ("ctm", "teacher", "score")
TEACHER_SOLVERS = ("heun", "euler", "dpmpp_2m")
MAX_STEPS = 1000
MAX_SAMPLES = 256


@dataclass(frozen=True)
class PipelineConfig:
    """What ``model_index.json`` holds besides the component folders."""

    latent_shape: tuple[int, int, int]
    n_frames: int
    sample_rate: int = 16000
    clip_seconds: float = 2.0
    sigma_data: float = 0.5
    sigma_min: float = schedule.SIGMA_MIN
    sigma_max: float = schedule.SIGMA_MAX
    guidance: float = 3.5
    text_encoder: dict = field(default_factory=lambda: {"name": "minilm", "path": None})
    vocoder: dict = field(default_factory=lambda: {"name": "griffin-lim", "n_iter": 32})
    teacher_steps: int = 40
    training_data: str | None = None  # "synthcaps" or a manifest; None: read provenance.json (see trained_on)

    @staticmethod
    def from_dict(d: dict) -> PipelineConfig:
        d = {k: v for k, v in d.items() if k in PipelineConfig.__dataclass_fields__}
        return PipelineConfig(**{**d, "latent_shape": tuple(d["latent_shape"])})


@dataclass
class Audio:
    """Generated audio: ``waveforms [N, T]`` float32 in [−1, 1] at ``sample_rate``, plus what made them."""

    waveforms: np.ndarray
    sample_rate: int
    prompts: list[str]
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.waveforms)

    def save(self, path: str | Path) -> list[Path]:
        """One clip: ``path``; several: ``path`` with ``_0``, ``_1`` … before the suffix (or ``sample_<i>.wav`` in
        the folder ``path`` when it has no suffix). The suffix names the format (``soundctm.audio.io.AUDIO_FORMATS``:
        .wav, .flac, .ogg, .mp3); missing folders are created, as ``save_spectrogram`` does."""
        from soundctm.audio.io import audio_format, save_audio

        path = Path(path)
        if len(self) == 1 and path.suffix:
            paths = [path]
        elif path.suffix:
            paths = [path.with_name(f"{path.stem}_{i}{path.suffix}") for i in range(len(self))]
        else:
            paths = [path / f"sample_{i}.wav" for i in range(len(self))]
        audio_format(paths[0])  # a bad suffix fails before any folder is made
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        return [save_audio(p, w, self.sample_rate) for p, w in zip(paths, self.waveforms)]

    def save_spectrogram(self, path: str | Path, index: int = 0, title: str | None = None) -> Path:
        """A mel-spectrogram PNG of waveform ``index`` (missing folders are created)."""
        from soundctm.plotting import save_mel_png

        return save_mel_png(self.waveforms[index], self.sample_rate, path, title or self.prompts[index])


# ---- argument checks (errors name the argument and its allowed range) ----

def check_prompts(prompt) -> list[str]:
    """A non-empty prompt or list of non-empty prompts."""
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError(f"prompt must be a non-empty string or a non-empty list of strings, got {prompt!r}")
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"prompt must be non-empty text (not only whitespace), got {p!r}")
    return [p.strip() for p in prompts]


def check_generate_args(steps, gamma, guidance, nu, num_samples, sampler, seed) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be an integer in [1, {MAX_STEPS}], got {steps!r}")
    if not _finite(gamma) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    if guidance is not None and (not _finite(guidance) or guidance < 0):
        raise ValueError(f"guidance must be a finite number >= 0, got {guidance!r}")
    if not _finite(nu) or nu < 0:
        raise ValueError(f"nu must be a finite number >= 0, got {nu!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) \
            or not 1 <= num_samples <= MAX_SAMPLES:
        raise ValueError(f"num_samples must be an integer in [1, {MAX_SAMPLES}], got {num_samples!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")


def check_sigmas(sigmas, steps: int, sampler: str, sigma_min: float, sigma_max: float) -> torch.Tensor | None:
    """A custom noise-level schedule as a float tensor (None: the default Karras grid). The CTM sampler takes
    ``steps + 1`` jump times in [σ_min, σ_max]; the ODE samplers ``steps + 1`` levels ending at exactly 0, the others
    in [σ_min, σ_max]. Strictly decreasing either way; the first scales x_T."""
    if sigmas is None:
        return None
    ode = sampler != "ctm"
    rule = (f"sigmas must be steps + 1 = {steps + 1} strictly decreasing noise levels in [{sigma_min:g}, "
            f"{sigma_max:g}]" + (" followed by a final 0" if ode else "") + f" for sampler={sampler!r}")
    try:
        vals = [float(v) for v in (sigmas.tolist() if hasattr(sigmas, "tolist") else sigmas)]
    except (TypeError, ValueError):
        raise ValueError(f"{rule}, got {sigmas!r}") from None
    body = vals[:-1] if ode else vals
    ok = (len(vals) == steps + 1 and all(math.isfinite(v) for v in vals)
          and all(a > b for a, b in zip(vals, vals[1:])) and all(sigma_min <= v <= sigma_max for v in body)
          and (not ode or vals[-1] == 0.0))
    if not ok:
        raise ValueError(f"{rule}, got {vals}")
    return torch.tensor(vals, dtype=torch.float32)


def _finite(v) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(float(v))


# ---- where a model is, where it runs, what it knows ----

def bundled_models() -> dict[str, Path]:
    """The pipelines shipped in ``soundctm/pretrained/``, by folder name (e.g. ``synthcaps-tiny``)."""
    return {p.parent.name: p.parent for p in sorted(BUNDLED_DIR.glob(f"*/{INDEX_FILE}"))}


def resolve_model(model: str | Path) -> Path:
    """A pipeline folder, or a bundled model's name → its folder; FileNotFoundError listing the bundled names."""
    path = Path(model)
    if path.is_dir():
        return path
    if not path.is_absolute() and ".." not in path.parts and (BUNDLED_DIR / path).is_dir():
        return BUNDLED_DIR / path  # e.g. "synthcaps-tiny", "digits/teacher"
    raise FileNotFoundError(f"model {str(model)!r} does not exist: not a folder nor a bundled model name "
                            f"(bundled: {', '.join(bundled_models())})")


def trained_on(path: str | Path, config: PipelineConfig | None = None) -> str | None:
    """What a pipeline folder's model was trained on: ``config.training_data`` when set, else what its
    ``provenance.json`` names ("synthcaps", a manifest path), or None when nothing says."""
    if config is not None and config.training_data:
        return config.training_data
    try:
        components = json.loads((Path(path) / PROVENANCE_FILE).read_text()).get("components", {})
    except (OSError, ValueError, AttributeError):
        return None
    named = {_dataset_name(v) for part in components.values() for v in _data_names(part)}
    others = sorted(named - {"synthcaps"})
    return others[0] if others else ("synthcaps" if named else None)


def synthcaps_summary() -> str:
    """What a SynthCaps-trained model (the bundled one) can follow, in a few lines for ``--help`` and the demo."""
    from soundctm.data.synthcaps import SOURCES

    return (f"It was trained only on SynthCaps, so it knows these sounds:\n  {', '.join(SOURCES)};\n"
            "their pitch (low, medium, high), count (once, twice, three times), sweep (rising, falling),\n"
            "loudness (quiet, loud), fades, reverb and background noise, e.g. 'a high beep sounding twice'.\n"
            "A prompt naming none of these sounds (e.g. 'a dog barking') gets a warning and noise.")


def _data_names(component) -> list:
    """The dataset names a provenance component gives: ``data.source.data`` (a cache's source), ``data.name``."""
    data = component.get("data") if isinstance(component, dict) else None
    if not isinstance(data, dict):
        return []
    source = data.get("source") if isinstance(data.get("source"), dict) else {}
    return [v for v in (source.get("data"), data.get("name")) if v]


def _dataset_name(value) -> str:
    """"synthcaps" for any spelling of it, else the value (a manifest path) as text."""
    return "synthcaps" if str(value).lower() == "synthcaps" else str(value)


def read_index(path: Path) -> PipelineConfig:
    """The ``PipelineConfig`` of a pipeline folder's ``model_index.json``; errors name the folder."""
    index = path / INDEX_FILE
    if not index.is_file():
        raise FileNotFoundError(f"model directory {str(path)!r} has no {INDEX_FILE}: not a soundctm pipeline")
    try:
        raw = json.loads(index.read_text())
        if raw.get("format") != FORMAT:
            raise ValueError(f"format is {raw.get('format')!r}, expected {FORMAT!r}")
        return PipelineConfig.from_dict(raw)
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as err:
        raise ValueError(f"model directory {str(path)!r} is corrupt or incomplete: {index.name}: {err}") from err


def load_component(folder: Path, load):
    """``load(folder)``; any failure (a missing, truncated or mismatched file) → one ValueError naming the files."""
    from safetensors import SafetensorError

    try:
        return load(folder)
    except (ValueError, KeyError, TypeError, OSError, RuntimeError, SafetensorError) as err:
        files = ", ".join(str(p) for p in sorted(folder.glob("*.safetensors"))) or str(folder)
        raise ValueError(f"model file(s) {files} corrupt or incomplete: {first_line(err)}") from err


def _is_loader(teacher) -> bool:
    return callable(teacher) and not isinstance(teacher, torch.nn.Module)


class PromptWarning(UserWarning):
    """A prompt the model is unlikely to follow (it names no sound the model was trained on)."""


def warn_unknown_prompts(prompts: list[str], training_data: str | None) -> None:
    """One ``PromptWarning`` line per prompt naming none of the SynthCaps sounds, for a SynthCaps-trained model."""
    if training_data != "synthcaps":
        return
    from soundctm.data.synthcaps import SOURCES
    from soundctm.data.synthcaps_captions import mentioned_sources

    for p in dict.fromkeys(prompts):
        if not mentioned_sources(p):
            warnings.warn(f"prompt {p[:60]!r} names none of the sounds this model was trained on "
                          f"({', '.join(SOURCES)}): expect noise", PromptWarning, stacklevel=4)  # generate's caller


class SoundCTM:
    """Text-to-sound pipeline around a CTM student (and optionally its teacher, for comparison).

    ``teacher`` may be a network or a zero-argument loader (``from_pretrained`` passes one), so that only
    ``sampler="teacher"`` reads the teacher's file; ``has_teacher`` says whether there is one without loading it.
    ``training_data`` ("synthcaps", a manifest, or None) decides whether prompts are checked against the
    SynthCaps vocabulary."""

    def __init__(self, vae, vocoder, text_encoder, student, config: PipelineConfig, teacher=None,
                 device: str | torch.device = "cpu", training_data: str | None = None):
        self.vae, self.vocoder, self.text_encoder = vae, vocoder, text_encoder
        self.student, self.config = student, config
        self.training_data = training_data or config.training_data
        self.device = check_device(device)
        self._teacher, self._load_teacher = (None, teacher) if _is_loader(teacher) else (teacher, None)
        for m in (vae, vocoder, student, self._teacher):
            if m is not None:
                self._prepare(m)

    def _prepare(self, module):
        return module.to(self.device).eval().requires_grad_(False)

    @property
    def has_teacher(self) -> bool:
        return self._teacher is not None or self._load_teacher is not None

    @property
    def teacher(self):
        """The teacher network (read from its folder on first use), or None."""
        if self._teacher is None and self._load_teacher is not None:
            self._teacher = self._prepare(self._load_teacher())
            self._load_teacher = None
        return self._teacher

    # ---- folders ----
    @classmethod
    def from_pretrained(cls, path: str | Path = DEFAULT_MODEL, device: str | torch.device = "cpu",
                        text_encoder=None) -> SoundCTM:
        """Load a pipeline folder (``model_index.json`` + ``vae/`` + ``student/`` [+ ``teacher/``]) or a bundled
        model by name (``bundled_models()``, e.g. "synthcaps-tiny"). The teacher is read only when first used."""
        from soundctm.audio.text import build_text_encoder
        from soundctm.audio.vae import AudioVAE
        from soundctm.audio.vocoder import build_vocoder
        from soundctm.nn.unet import TextUNet, TwoTimeTextUNet

        device = check_device(device)
        path = resolve_model(path)
        config = read_index(path)
        vae = load_component(path / "vae", AudioVAE.from_pretrained)
        student = load_component(path / "student", TwoTimeTextUNet.from_pretrained)
        teacher = None
        if (path / "teacher").is_dir():
            def teacher():
                return load_component(path / "teacher", TextUNet.from_pretrained)
        voc = config.vocoder
        vocoder_path = path / voc["path"] if voc.get("path") else None
        options = {k: v for k, v in voc.items() if k not in ("name", "path")}
        try:
            vocoder = build_vocoder(voc["name"], vocoder_path, vae.config.mel, **options)
        except ValueError as err:
            raise ValueError(f"model directory {str(path)!r}: {INDEX_FILE} vocoder entry: {err}") from err
        te = text_encoder or build_text_encoder(config.text_encoder["name"], config.text_encoder.get("path"))
        return cls(vae, vocoder, te, student, config, teacher, device, trained_on(path, config))

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``model_index.json`` and the component folders."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.vae.save_pretrained(path / "vae")
        self.student.save_pretrained(path / "student")
        if self.has_teacher:
            self.teacher.save_pretrained(path / "teacher")
        index = {"format": FORMAT, "version": 1, **asdict(self.config)}
        (path / INDEX_FILE).write_text(json.dumps(index, indent=2, default=list) + "\n")
        return path

    # ---- pieces ----
    def encode_text(self, prompts: list[str]):
        emb = self.text_encoder.encode(prompts).to(self.device)
        null = self.text_encoder.encode_unconditional(1).to(self.device)
        return {"tokens": emb.tokens, "mask": emb.mask}, {"tokens": null.tokens, "mask": null.mask}

    def initial_noise(self, n: int, generator: torch.Generator, sigma: float | None = None) -> torch.Tensor:
        """x_T = σ·z (σ: the schedule's first level, default σ_max) in latent shape ``[n, C, H, W]`` (drawn on the
        CPU so seeds match across devices)."""
        z = torch.randn(n, *self.config.latent_shape, generator=generator)
        return (z * (self.config.sigma_max if sigma is None else sigma)).to(self.device)

    def default_sigmas(self, steps: int, sampler: str = "ctm") -> torch.Tensor:
        """The Karras grid a sampler uses unless given ``sigmas``: CTM's ``steps`` jumps end at σ_min, the ODE
        solvers' ``steps`` steps at 0."""
        c = self.config
        if sampler == "ctm":
            return schedule.karras_sigmas(steps + 1, c.sigma_min, c.sigma_max)
        return schedule.append_zero(schedule.karras_sigmas(steps, c.sigma_min, c.sigma_max))

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents → waveforms ``[N, T]`` (VAE → mel → vocoder), cropped to the clip, peak-safe (≤ 0.99)."""
        mel = self.vae.decode(latents, self.config.n_frames)
        wave = self.vocoder(mel).float().cpu().numpy()
        wave = wave[:, : int(round(self.config.clip_seconds * self.config.sample_rate))]
        peak = np.abs(wave).max(axis=1, keepdims=True)
        return (wave * np.minimum(1.0, 0.99 / np.maximum(peak, 1e-12))).astype(np.float32)

    def sample_latents(self, x_T, cond, uncond, steps, gamma, guidance, nu, sampler, teacher_solver,
                       generator, callback=None, sigmas: torch.Tensor | None = None) -> torch.Tensor:
        """Run the chosen sampler from x_T along ``sigmas`` (default: ``default_sigmas``); returns clean latents."""
        n = x_T.shape[0]
        sig = (self.default_sigmas(steps, sampler) if sigmas is None else sigmas).to(self.device)
        omega = torch.full((n,), float(guidance), device=self.device)
        if sampler == "ctm":
            G = CTMPrecond(self.student, self.config.sigma_data)
            G_nu = classifier_free_guidance(G, nu, uncond)  # ν-sampling; ν = 1 evaluates no unconditional branch
            return samplers.sample_ctm(G_nu, x_T, sig, gamma, generator=generator, callback=callback,
                                       omega=omega, **cond)
        if sampler == "teacher":
            if not self.has_teacher:
                raise ValueError("sampler='teacher' needs a pipeline saved with its teacher")
            D = EDMDenoiser(self.teacher, self.config.sigma_data)
        else:  # "score": the student's own denoiser g(x, σ, σ) at ω = 1, guided like a teacher
            D = CTMPrecond(self.student, self.config.sigma_data).denoiser()
            omega = torch.ones_like(omega)
        D_w = classifier_free_guidance(D, float(guidance), uncond)
        return samplers.sample_ode(D_w, x_T, sig, teacher_solver, callback=callback, omega=omega, **cond)

    # ---- the public call ----
    @torch.no_grad()
    def generate(self, prompt: str | list[str], steps: int = 1, gamma: float = 0.0, guidance: float | None = None,
                 nu: float = 1.0, seed: int | None = None, num_samples: int = 1, sampler: str = "ctm",
                 teacher_solver: str = "heun", callback=None, sigmas=None) -> Audio:
        """Generate ``num_samples`` clips per prompt.

        steps: CTM jumps (sampler="ctm") or ODE steps ("teacher", "score"); gamma ∈ [0, 1]: the share of fresh
        noise re-injected between CTM jumps, 0 deterministic … 1 consistency-model multistep — so it has no effect
        at steps=1 (there is no later jump) nor with the ODE samplers; guidance ω ≥ 0 (default: the model's);
        nu ≥ 0: SoundCTM's ν-sampling mix of conditional and unconditional jumps (1 = conditional only); seed:
        reproducible x_T and noise; callback: called after each step with a dict (``i``, ``x``, …), e.g. for a
        progress bar; sigmas: a custom noise-level schedule (``steps + 1`` levels, see ``check_sigmas``; default the
        Karras grid of ``default_sigmas``), e.g. to place the 4-step sampler's jumps elsewhere.

        A model trained on SynthCaps knows its eleven sounds (``soundctm.data.synthcaps.SOURCES``) and their
        attributes; a prompt naming none of them gets a ``PromptWarning`` (and noise).
        """
        prompts = check_prompts(prompt)
        check_generate_args(steps, gamma, guidance, nu, num_samples, sampler, seed)
        if teacher_solver not in TEACHER_SOLVERS:
            raise ValueError(f"teacher_solver must be one of {TEACHER_SOLVERS}, got {teacher_solver!r}")
        sigmas = check_sigmas(sigmas, int(steps), sampler, self.config.sigma_min, self.config.sigma_max)
        warn_unknown_prompts(prompts, self.training_data)
        sig = self.default_sigmas(int(steps), sampler) if sigmas is None else sigmas
        guidance = self.config.guidance if guidance is None else float(guidance)
        seed = int(torch.randint(0, 2**31 - 1, ()).item()) if seed is None else int(seed)
        generator = torch.Generator().manual_seed(seed)
        batch = [p for p in prompts for _ in range(num_samples)]
        t0 = time.perf_counter()
        cond, uncond = self.encode_text(batch)
        x_T = self.initial_noise(len(batch), generator, float(sig[0]))
        latents = self.sample_latents(x_T, cond, uncond, int(steps), float(gamma), guidance, float(nu), sampler,
                                      teacher_solver, generator, callback, sigmas=sig)
        waves = self.decode(latents)
        seconds = time.perf_counter() - t0
        info = {"steps": int(steps), "gamma": float(gamma), "guidance": guidance, "nu": float(nu), "seed": seed,
                "sampler": sampler, "nfe": self.nfe(sampler, int(steps), guidance, float(nu), teacher_solver),
                "sigmas": [float(v) for v in sig],
                "seconds": seconds, "audio_seconds": waves.shape[1] / self.config.sample_rate * len(waves)}
        info["real_time_factor"] = info["audio_seconds"] / max(seconds, 1e-9)
        return Audio(waves, self.config.sample_rate, batch, info)

    @staticmethod
    def nfe(sampler: str, steps: int, guidance: float, nu: float, solver: str = "heun") -> int:
        """Network evaluations per sample (a CFG pair counts as 2)."""
        if sampler == "ctm":
            return steps * (1 if nu == 1.0 else 2)
        per = 2 * steps - 1 if solver == "heun" else steps
        return per * (1 if guidance == 1.0 else 2)


_DEFAULT: dict[str, SoundCTM] = {}


def generate(prompt: str | list[str], steps: int = 1, gamma: float = 0.0, **kwargs) -> Audio:
    """``SoundCTM.generate`` with the bundled default model (loaded once per process); γ acts only at steps ≥ 2."""
    if "default" not in _DEFAULT:
        _DEFAULT["default"] = SoundCTM.from_pretrained(DEFAULT_MODEL)
    return _DEFAULT["default"].generate(prompt, steps=steps, gamma=gamma, **kwargs)
