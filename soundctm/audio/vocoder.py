"""Vocoders: log-mel ``[B, n_mels, F]`` → wave ``[B, T]``, each with ``.sample_rate``.

- ``GriffinLimVocoder``: no training; mel → linear magnitude, then fast Griffin-Lim (Perraudin, Balazs &
  Søndergaard 2013). The magnitude is Hann-window lobes at prominent mel peaks (frequency from the
  height-normalised centroid of three triangle filters, exact where the triangles are linear) plus a
  non-negative least-squares fit of the rest. NNLS alone smears a tone over a filter (≈ 10 % off at 115 Hz).
- ``HifiGanVocoder``: ``transformers.SpeechT5HifiGan`` (the class AudioLDM ships its HiFi-GAN in), from a local folder.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundctm.audio.mel import MelConfig, mel_filterbank


def _check_mel(mel: torch.Tensor, n_mels: int) -> torch.Tensor:
    """Accept ``[n_mels, F]`` or ``[B, n_mels, F]``; return the batched form."""
    mel = mel.unsqueeze(0) if mel.dim() == 2 else mel
    if mel.dim() != 3 or mel.shape[1] != n_mels:
        raise ValueError(f"mel must be [B, {n_mels}, frames], got shape {tuple(mel.shape)}")
    return mel


def nnls_mel_to_linear(mel: torch.Tensor, basis: torch.Tensor, n_iter: int = 30,
                       pinv: torch.Tensor | None = None) -> torch.Tensor:
    """argmin_{x≥0} ||basis·x − mel||² by multiplicative updates from the clamped pseudo-inverse (``pinv``: that
    of ``basis``, computed when not given); ``[B, n_mels, F]`` → ``[B, n_freqs, F]``."""
    b, n_mels, frames = mel.shape
    flat = mel.transpose(0, 1).reshape(n_mels, b * frames)  # one [n_mels, B·F] product instead of B small ones
    x = torch.clamp((torch.linalg.pinv(basis) if pinv is None else pinv) @ flat, min=1e-8)
    basis_t = basis.T.contiguous()
    if basis.device.type == "cpu":  # a mel filterbank has ≤ 2 non-zeros per column: sparse products, 1.7× faster
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            basis, basis_t = basis.to_sparse_csr(), basis_t.to_sparse_csr()
    target = basis_t @ flat
    for _ in range(n_iter):
        # basisᵀ(basis·x) rather than (basisᵀbasis)·x: n_mels ≪ n_freqs, so fewer multiply-adds
        denominator = (basis_t @ (basis @ x)).clamp_min_(1e-12)
        x.mul_(target).div_(denominator)
    return x.reshape(-1, b, frames).transpose(0, 1)


def hann_lobe(delta: torch.Tensor) -> torch.Tensor:
    """Main lobe of a Hann window's |DTFT| at ``delta`` bins from its peak, peak 1: |sinc δ / (1 − δ²)| for |δ| < 2."""
    d = delta.abs()
    at_one = (d - 1).abs() < 1e-4
    lobe = torch.sinc(d) / torch.where(at_one, torch.ones_like(d), 1 - d**2)
    lobe = torch.where(at_one, torch.full_like(d, 0.5), lobe)
    return torch.where(d < 2, lobe.abs(), torch.zeros_like(d))


def mel_peaks(mel: torch.Tensor, prominence: float) -> torch.Tensor:
    """Bool ``[B, n_mels, F]``: local maxima along the mel axis, ``prominence`` times above both bins two away."""
    padded = F.pad(mel, (0, 0, 2, 2))
    left1, right1, left2, right2 = padded[:, 1:-3], padded[:, 3:-1], padded[:, :-4], padded[:, 4:]
    peaks = (mel > left1) & (mel >= right1) & (mel > prominence * torch.maximum(left2, right2))
    peaks[:, 0] = peaks[:, -1] = False
    return peaks


@dataclass
class LineFit:
    """Sinusoids fitted behind mel peaks: peak p sits in clip ``b[p]``, frame ``t[p]`` at ``freq[p]`` Hz; its Hann
    lobe has magnitude ``amp[p]·lobes[p, j]`` on STFT bin ``bins[p, j]``."""

    b: torch.Tensor
    t: torch.Tensor
    freq: torch.Tensor
    bins: torch.Tensor
    lobes: torch.Tensor
    amp: torch.Tensor


def fit_lines(
    mel: torch.Tensor, basis: torch.Tensor, centers_hz: torch.Tensor, config: MelConfig, prominence: float
) -> LineFit:
    """Sinusoids behind prominent mel peaks (power mel ``[B, n_mels, F]``).

    Where a triangle filter is linear, a tone at f between centres c_k < f < c_{k+1} gives height-normalised
    responses proportional to (c_{k+1} − f) and (f − c_k), so f is their centroid over k−1..k+1; the lobe
    amplitude is the least-squares fit of its mel response to those three bins.
    """  # fmt: skip
    b, k, t = mel_peaks(mel, prominence).nonzero(as_tuple=True)
    n_freqs = basis.shape[1]
    near = k[:, None] + torch.arange(-1, 2, device=mel.device)  # [P, 3]
    m3 = mel[b[:, None], near, t[:, None]]
    weights = m3 / basis.amax(dim=1)[near]
    f_star = (weights * centers_hz[near]).sum(1) / weights.sum(1).clamp_min(1e-12)
    bin_hz = config.sample_rate / config.n_fft
    lobe_hz = config.sample_rate / config.win_length  # the window's DTFT is in units of 1 / win_length
    # the lobe vanishes beyond ±2 lobe widths: only the 2W + 1 bins around f* carry it
    reach = math.ceil(2 * lobe_hz / bin_hz)
    bins = torch.round(f_star / bin_hz).long()[:, None] + torch.arange(-reach, reach + 1, device=mel.device)
    inside = (bins >= 0) & (bins < n_freqs)
    bins = bins.clamp(0, n_freqs - 1)
    lobes = hann_lobe((bins.to(mel.dtype) * bin_hz - f_star[:, None]) / lobe_hz) ** config.power * inside
    response = (lobes[:, None, :] * basis[near[:, :, None], bins[:, None, :]]).sum(-1)  # [P, 3]
    amp = (m3 * response).sum(1) / (response**2).sum(1).clamp_min(1e-12)
    return LineFit(b, t, f_star, bins, lobes, amp)


def spectral_lines(
    mel: torch.Tensor, basis: torch.Tensor, centers_hz: torch.Tensor, config: MelConfig, prominence: float,
    fit: LineFit | None = None,
) -> torch.Tensor:
    """|STFT| ``[B, n_freqs, F]`` made of the Hann lobes of `fit_lines` (power scale, like ``mel``)."""  # fmt: skip
    fit = fit_lines(mel, basis, centers_hz, config, prominence) if fit is None else fit
    lines = torch.zeros(mel.shape[0], mel.shape[2], basis.shape[1], dtype=mel.dtype, device=mel.device)
    rows = lambda idx: idx[:, None].expand_as(fit.bins)  # noqa: E731
    lines.index_put_((rows(fit.b), rows(fit.t), fit.bins), fit.amp[:, None] * fit.lobes, accumulate=True)
    return lines.transpose(1, 2)


def line_phases(fit: LineFit, n_frames: int, hop_s: float, generator: torch.Generator) -> torch.Tensor:
    """Running phase Φ (radians) of every fitted line, ``[P]``: peaks are linked to the nearest peak of the
    previous frame of the same clip (within 3 % of the frequency or 2 bins' worth, 31 Hz at the default STFT)
    and advance by 2π·hop·(f_prev + f)/2; an unlinked peak starts a new line at a random phase."""
    freq = fit.freq.double().cpu().numpy()
    b, t = fit.b.cpu().numpy(), fit.t.cpu().numpy()
    phi = np.zeros(len(freq))
    start = torch.rand(len(freq), generator=generator, dtype=torch.float64).numpy() * 2 * np.pi
    order = np.lexsort((freq, t, b))
    keys = b[order] * (n_frames + 1) + t[order]
    bounds = np.flatnonzero(np.diff(keys)) + 1
    groups = np.split(order, bounds)
    prev_key, prev = None, None
    for g in groups:
        key = (b[g[0]], t[g[0]])
        if prev is not None and prev_key == (key[0], key[1] - 1):
            f, fp = freq[g], freq[prev]
            j = np.abs(f[:, None] - fp[None, :]).argmin(1)
            linked = np.abs(f - fp[j]) <= np.maximum(0.03 * f, 31.25)
            phi[g] = np.where(linked, phi[prev][j] + np.pi * hop_s * (f + fp[j]), start[g])
        else:
            phi[g] = start[g]
        prev_key, prev = key, g
    return torch.from_numpy(phi)


PHASE_INITS = ("random", "lines")


class GriffinLimVocoder(nn.Module):
    """log-mel → |STFT| (spectral lines + NNLS; lines off with ``line_prominence=None``) → fast Griffin-Lim.

    ``phase_init="lines"`` starts Griffin-Lim from the phase a stationary sinusoid has on the bins of each fitted
    line (running phase Φ of the tracked line, minus π per bin: torch.stft's centred frames), random elsewhere;
    ``"random"`` starts from random phase everywhere.

    ``nnls_iter``: multiplicative NNLS updates from the clamped pseudo-inverse (10: the log-mel of the result is no
    further from the input than after 30, measured in ``benchmarks/vocoder.py``); ``max_batch``: clips per chunk
    on a CPU, where a [16, 513, 201] complex spectrogram no longer fits the caches (4 clips a chunk: 1.4× faster
    at batch 16); each chunk draws its noise phases from ``seed``.
    """

    def __init__(
        self, mel_config: MelConfig | None = None, n_iter: int = 32, momentum: float = 0.99, seed: int = 0,
        line_prominence: float | None = 3.0, phase_init: str = "random", nnls_iter: int = 10, max_batch: int = 4,
    ):  # fmt: skip
        super().__init__()
        if n_iter < 0:
            raise ValueError(f"n_iter must be >= 0, got {n_iter}")
        if nnls_iter < 1:
            raise ValueError(f"nnls_iter must be >= 1, got {nnls_iter}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if phase_init not in PHASE_INITS:
            raise ValueError(f"phase_init must be one of {PHASE_INITS}, got {phase_init!r}")
        if phase_init == "lines" and line_prominence is None:
            raise ValueError("phase_init='lines' needs line_prominence (the fitted lines carry the phase)")
        self.mel_config = mel_config or MelConfig()
        self.n_iter, self.momentum, self.seed = n_iter, momentum, seed
        self.line_prominence, self.phase_init = line_prominence, phase_init
        self.nnls_iter, self.max_batch = nnls_iter, max_batch
        self.register_buffer("mel_basis", mel_filterbank(self.mel_config), persistent=False)
        self.register_buffer("window", torch.hann_window(self.mel_config.win_length), persistent=False)
        self.register_buffer("mel_pinv", torch.linalg.pinv(self.mel_basis.double()).float(), persistent=False)
        centers = librosa.mel_frequencies(
            self.mel_config.n_mels + 2, fmin=self.mel_config.fmin, fmax=self.mel_config.fmax
        )
        self.register_buffer("centers_hz", torch.tensor(centers[1:-1], dtype=torch.float32), persistent=False)

    @property
    def sample_rate(self) -> int:
        return self.mel_config.sample_rate

    def linear_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """log-mel ``[B, n_mels, F]`` → |STFT| ``[B, n_freqs, F]`` (undo log, NNLS, undo power)."""
        return self._magnitude_and_lines(log_mel)[0]

    def _magnitude_and_lines(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, LineFit | None]:
        c, basis = self.mel_config, self.mel_basis.float()
        mel = torch.exp(log_mel.float())
        lines = torch.zeros(mel.shape[0], basis.shape[1], mel.shape[2], device=mel.device)
        fit = None
        if self.line_prominence is not None:
            fit = fit_lines(mel, basis, self.centers_hz, c, self.line_prominence)
            lines = spectral_lines(mel, basis, self.centers_hz, c, self.line_prominence, fit)
            mel = (mel - basis @ lines).clamp_min(0.0)
        linear = nnls_mel_to_linear(mel, basis, self.nnls_iter, pinv=self.mel_pinv.float()) + lines
        return linear.pow(1.0 / c.power), fit

    def initial_phase(self, shape: torch.Size, fit: LineFit | None, generator: torch.Generator) -> torch.Tensor:
        """Starting phase ``[B, n_freqs, F]``: random, then (``phase_init="lines"``) Φ_p − π·bin on the bins of
        each line's lobe, the stronger line winning where lobes overlap."""
        phase = torch.rand(shape, generator=generator) * (2 * torch.pi)
        if self.phase_init != "lines" or fit is None or len(fit.b) == 0:
            return phase
        hop_s = self.mel_config.hop_length / self.mel_config.sample_rate
        phi = line_phases(fit, shape[-1], hop_s, generator).float()
        strength = (fit.amp[:, None] * fit.lobes).cpu()
        bins, b, t = fit.bins.cpu(), fit.b.cpu(), fit.t.cpu()
        order = torch.argsort(strength.flatten(), stable=True)  # weakest first: the strongest writes last
        rows = lambda idx: idx[:, None].expand_as(bins).flatten()[order]  # noqa: E731
        on = strength.flatten()[order] > 0
        values = (phi[:, None] - torch.pi * bins.float()).flatten()[order]
        phase[rows(b)[on], bins.flatten()[order][on], rows(t)[on]] = values[on]
        return phase

    def _stft(self, wave: torch.Tensor) -> torch.Tensor:
        c = self.mel_config
        return torch.stft(
            wave, c.n_fft, c.hop_length, c.win_length, self.window, center=True, pad_mode="reflect",
            return_complex=True,
        )  # fmt: skip

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        c = self.mel_config
        return torch.istft(spec, c.n_fft, c.hop_length, c.win_length, self.window, center=True, length=length)

    def griffin_lim(self, magnitude: torch.Tensor, fit: LineFit | None = None) -> torch.Tensor:
        """Fast Griffin-Lim (Perraudin 2013, Alg. 2): t_n = P(c_{n−1}); c_n = t_n + α(t_n − t_{n−1})."""
        length = self.mel_config.n_samples(magnitude.shape[-1])
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        phase = self.initial_phase(magnitude.shape, fit, gen).to(magnitude.device)
        angles = torch.polar(torch.ones_like(magnitude), phase)
        previous = None
        for _ in range(self.n_iter):
            projected = self._stft(self._istft(magnitude * angles, length))
            # (1 + α)·t_n − α·t_{n−1}, then unit modulus (sgn: z/|z|, 0 at 0) with few temporaries
            accelerated = projected * (1.0 + self.momentum)
            if previous is not None:
                accelerated.sub_(previous, alpha=self.momentum)
            angles = accelerated.sgn()
            previous = projected
        return self._istft(magnitude * angles, length)

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, F]`` → ``[B, (F − 1)·hop]``."""
        log_mel = _check_mel(log_mel, self.mel_config.n_mels)
        if log_mel.device.type == "cpu" and log_mel.shape[0] > self.max_batch:
            return torch.cat([self(chunk) for chunk in log_mel.split(self.max_batch)])
        return self.griffin_lim(*self._magnitude_and_lines(log_mel))


class HifiGanVocoder(nn.Module):
    """AudioLDM-format HiFi-GAN (``transformers.SpeechT5HifiGan``): log-mel ``[B, n_mels, F]`` → ``[B, F·∏u]``."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sampling_rate)

    @property
    def n_mels(self) -> int:
        return int(self.model.config.model_in_dim)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> HifiGanVocoder:
        """Load from a local folder: a SpeechT5HifiGan save, or a pipeline folder with a ``vocoder/`` subfolder."""
        from transformers import SpeechT5HifiGan

        folder = Path(path)
        if (folder / "vocoder" / "config.json").is_file():
            folder = folder / "vocoder"
        if not (folder / "config.json").is_file():
            raise ValueError(f"path must be a local SpeechT5HifiGan folder with config.json, got {path}")
        return cls(SpeechT5HifiGan.from_pretrained(str(folder), local_files_only=True))

    def save_pretrained(self, path: str | os.PathLike) -> None:
        self.model.save_pretrained(str(path))

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        log_mel = _check_mel(log_mel, self.n_mels)
        return self.model(log_mel.transpose(1, 2).to(self.model.dtype))


def _build_griffin_lim(path: str | None, mel_config: MelConfig | None, **options) -> GriffinLimVocoder:
    return GriffinLimVocoder(mel_config, **options)


def _build_griffin_lim_nnls(path: str | None, mel_config: MelConfig | None, **options) -> GriffinLimVocoder:
    return GriffinLimVocoder(mel_config, line_prominence=None, **options)


def _build_hifigan(path: str | None, mel_config: MelConfig | None, **options) -> HifiGanVocoder:
    if options:
        raise ValueError(f"vocoder 'hifigan' takes no options, got {sorted(options)}")
    if path is None:
        raise ValueError("vocoder 'hifigan' needs path= a local SpeechT5HifiGan folder")
    return HifiGanVocoder.from_pretrained(path)


VOCODERS: dict[str, Callable[..., nn.Module]] = {
    "griffin-lim": _build_griffin_lim,
    "griffin-lim-nnls": _build_griffin_lim_nnls,  # without the spectral-line step (ablation)
    "hifigan": _build_hifigan,
}


def build_vocoder(name: str, path: str | os.PathLike | None = None, mel_config: MelConfig | None = None,
                  **options) -> nn.Module:
    """Vocoder by registry name (``griffin-lim``, ``hifigan``); ``path`` is a local weights folder where needed;
    ``options`` go to the constructor (Griffin-Lim: ``n_iter``, ``phase_init``, ``momentum``, ...)."""
    if name not in VOCODERS:
        raise ValueError(f"vocoder name must be one of {sorted(VOCODERS)}, got {name!r}")
    try:
        return VOCODERS[name](None if path is None else str(path), mel_config, **options)
    except TypeError as err:
        raise ValueError(f"vocoder {name!r}: bad options {sorted(options)}: {err}") from err
