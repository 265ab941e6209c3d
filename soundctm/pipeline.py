"""Inference: text → text encoder → sampler (CTM γ-sampling, teacher ODE, or the student's own score) →
latent → VAE decode → mel → vocoder → waveform.

    from soundctm import SoundCTM
    pipe = SoundCTM.from_pretrained("soundctm/pretrained/synthcaps-tiny")
    audio = pipe.generate("a high beep sounding twice", steps=1, gamma=0.0, seed=0)
    audio.save("beep.wav")
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from soundctm.core import samplers, schedule
from soundctm.core.guidance import classifier_free_guidance
from soundctm.core.precond import CTMPrecond, EDMDenoiser

INDEX_FILE = "model_index.json"
FORMAT = "soundctm-pipeline"
DEFAULT_MODEL = Path(__file__).resolve().parent / "pretrained" / "synthcaps-tiny"
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
        """One wav: ``path``; several: ``path`` with ``_0``, ``_1`` … before the suffix (or into a folder)."""
        from soundctm.audio.io import save_audio

        path = Path(path)
        if len(self) == 1 and path.suffix:
            return [save_audio(path, self.waveforms[0], self.sample_rate)]
        if path.suffix:
            paths = [path.with_name(f"{path.stem}_{i}{path.suffix}") for i in range(len(self))]
        else:
            paths = [path / f"sample_{i}.wav" for i in range(len(self))]
        return [save_audio(p, w, self.sample_rate) for p, w in zip(paths, self.waveforms)]

    def save_spectrogram(self, path: str | Path, index: int = 0, title: str | None = None) -> Path:
        """A mel-spectrogram PNG of waveform ``index``."""
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


class SoundCTM:
    """Text-to-sound pipeline around a CTM student (and optionally its teacher, for comparison)."""

    def __init__(self, vae, vocoder, text_encoder, student, config: PipelineConfig, teacher=None,
                 device: str | torch.device = "cpu"):
        self.vae, self.vocoder, self.text_encoder = vae, vocoder, text_encoder
        self.student, self.teacher, self.config = student, teacher, config
        self.device = torch.device(device)
        for m in (vae, vocoder, student, teacher):
            if m is not None:
                m.to(self.device).eval().requires_grad_(False)

    # ---- folders ----
    @classmethod
    def from_pretrained(cls, path: str | Path = DEFAULT_MODEL, device: str | torch.device = "cpu",
                        text_encoder=None) -> SoundCTM:
        """Load a pipeline folder (``model_index.json`` + ``vae/`` + ``student/`` [+ ``teacher/``])."""
        from soundctm.audio.text import build_text_encoder
        from soundctm.audio.vae import AudioVAE
        from soundctm.audio.vocoder import build_vocoder
        from soundctm.nn.unet import TextUNet, TwoTimeTextUNet

        path = Path(path)
        index = path / INDEX_FILE
        if not path.is_dir():
            raise FileNotFoundError(f"model directory {str(path)!r} does not exist")
        if not index.is_file():
            raise FileNotFoundError(f"model directory {str(path)!r} has no {INDEX_FILE}: not a soundctm pipeline")
        try:
            raw = json.loads(index.read_text())
            if raw.get("format") != FORMAT:
                raise ValueError(f"format is {raw.get('format')!r}, expected {FORMAT!r}")
            config = PipelineConfig.from_dict(raw)
            vae = AudioVAE.from_pretrained(path / "vae")
            student = TwoTimeTextUNet.from_pretrained(path / "student")
            teacher = TextUNet.from_pretrained(path / "teacher") if (path / "teacher").is_dir() else None
        except (ValueError, KeyError, TypeError, OSError, RuntimeError) as err:
            raise ValueError(f"model directory {str(path)!r} is corrupt or incomplete: {err}") from err
        voc = config.vocoder
        vocoder_path = path / voc["path"] if voc.get("path") else None
        options = {k: v for k, v in voc.items() if k not in ("name", "path")}
        try:
            vocoder = build_vocoder(voc["name"], vocoder_path, vae.config.mel, **options)
        except ValueError as err:
            raise ValueError(f"model directory {str(path)!r}: {INDEX_FILE} vocoder entry: {err}") from err
        te = text_encoder or build_text_encoder(config.text_encoder["name"], config.text_encoder.get("path"))
        return cls(vae, vocoder, te, student, config, teacher, device)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``model_index.json`` and the component folders."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.vae.save_pretrained(path / "vae")
        self.student.save_pretrained(path / "student")
        if self.teacher is not None:
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
            if self.teacher is None:
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

        steps: CTM jumps (sampler="ctm") or ODE steps ("teacher", "score"); gamma ∈ [0, 1]: 0 deterministic,
        1 consistency-model multistep; guidance ω ≥ 0 (default: the model's); nu ≥ 0: SoundCTM's ν-sampling
        mix of conditional and unconditional jumps (1 = conditional only); seed: reproducible x_T and noise;
        sigmas: a custom noise-level schedule (``steps + 1`` levels, see ``check_sigmas``; default the Karras grid
        of ``default_sigmas``), e.g. to place the 4-step sampler's jumps elsewhere.
        """
        prompts = check_prompts(prompt)
        check_generate_args(steps, gamma, guidance, nu, num_samples, sampler, seed)
        if teacher_solver not in TEACHER_SOLVERS:
            raise ValueError(f"teacher_solver must be one of {TEACHER_SOLVERS}, got {teacher_solver!r}")
        sigmas = check_sigmas(sigmas, int(steps), sampler, self.config.sigma_min, self.config.sigma_max)
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
    """``SoundCTM.generate`` with the bundled default model (loaded once per process)."""
    if "default" not in _DEFAULT:
        _DEFAULT["default"] = SoundCTM.from_pretrained(DEFAULT_MODEL)
    return _DEFAULT["default"].generate(prompt, steps=steps, gamma=gamma, **kwargs)
