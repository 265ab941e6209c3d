"""Vocoders: log-mel ``[B, n_mels, F]`` → wave ``[B, T]``, each with ``.sample_rate``.

- ``GriffinLimVocoder``: no training; mel → linear magnitude by non-negative least squares on the filterbank,
  then fast Griffin-Lim (Perraudin, Balazs & Søndergaard 2013, "A fast Griffin-Lim algorithm").
- ``HifiGanVocoder``: ``transformers.SpeechT5HifiGan`` (the class AudioLDM ships its HiFi-GAN in), from a local folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from soundctm.audio.mel import MelConfig, mel_filterbank


def _check_mel(mel: torch.Tensor, n_mels: int) -> torch.Tensor:
    """Accept ``[n_mels, F]`` or ``[B, n_mels, F]``; return the batched form."""
    mel = mel.unsqueeze(0) if mel.dim() == 2 else mel
    if mel.dim() != 3 or mel.shape[1] != n_mels:
        raise ValueError(f"mel must be [B, {n_mels}, frames], got shape {tuple(mel.shape)}")
    return mel


def nnls_mel_to_linear(mel: torch.Tensor, basis: torch.Tensor, n_iter: int = 30) -> torch.Tensor:
    """argmin_{x≥0} ||basis·x − mel||² by multiplicative updates from the clamped pseudo-inverse; ``[B, n_mels, F]``
    → ``[B, n_freqs, F]``."""
    gram = basis.T @ basis
    target = basis.T @ mel
    x = torch.clamp(torch.linalg.pinv(basis) @ mel, min=1e-8)
    for _ in range(n_iter):
        x = x * target / (gram @ x).clamp_min(1e-12)
    return x


class GriffinLimVocoder(nn.Module):
    """Phase reconstruction from a log-mel: NNLS inversion of the filterbank, then fast Griffin-Lim with momentum."""

    def __init__(self, mel_config: MelConfig | None = None, n_iter: int = 32, momentum: float = 0.99, seed: int = 0):
        super().__init__()
        if n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {n_iter}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.mel_config = mel_config or MelConfig()
        self.n_iter, self.momentum, self.seed = n_iter, momentum, seed
        self.register_buffer("mel_basis", mel_filterbank(self.mel_config), persistent=False)
        self.register_buffer("window", torch.hann_window(self.mel_config.win_length), persistent=False)

    @property
    def sample_rate(self) -> int:
        return self.mel_config.sample_rate

    def linear_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """log-mel ``[B, n_mels, F]`` → |STFT| ``[B, n_freqs, F]`` (undo log, NNLS, undo power)."""
        mel = torch.exp(log_mel.float())
        linear = nnls_mel_to_linear(mel, self.mel_basis.float())
        return linear.pow(1.0 / self.mel_config.power)

    def _stft(self, wave: torch.Tensor) -> torch.Tensor:
        c = self.mel_config
        return torch.stft(
            wave, c.n_fft, c.hop_length, c.win_length, self.window, center=True, pad_mode="reflect",
            return_complex=True,
        )  # fmt: skip

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        c = self.mel_config
        return torch.istft(spec, c.n_fft, c.hop_length, c.win_length, self.window, center=True, length=length)

    def griffin_lim(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Fast Griffin-Lim (Perraudin 2013, Alg. 2): t_n = P(c_{n−1}); c_n = t_n + α(t_n − t_{n−1})."""
        length = self.mel_config.n_samples(magnitude.shape[-1])
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        phase = torch.rand(magnitude.shape, generator=gen).to(magnitude.device) * (2 * torch.pi)
        angles = torch.polar(torch.ones_like(magnitude), phase)
        previous = torch.zeros_like(angles)
        for _ in range(self.n_iter):
            projected = self._stft(self._istft(magnitude * angles, length))
            accelerated = projected + self.momentum * (projected - previous)
            angles = accelerated / accelerated.abs().clamp_min(1e-8)
            previous = projected
        return self._istft(magnitude * angles, length)

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, F]`` → ``[B, (F − 1)·hop]``."""
        log_mel = _check_mel(log_mel, self.mel_config.n_mels)
        return self.griffin_lim(self.linear_magnitude(log_mel))


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


def _build_griffin_lim(path: str | None, mel_config: MelConfig | None) -> GriffinLimVocoder:
    return GriffinLimVocoder(mel_config)


def _build_hifigan(path: str | None, mel_config: MelConfig | None) -> HifiGanVocoder:
    if path is None:
        raise ValueError("vocoder 'hifigan' needs path= a local SpeechT5HifiGan folder")
    return HifiGanVocoder.from_pretrained(path)


VOCODERS: dict[str, Callable[[str | None, MelConfig | None], nn.Module]] = {
    "griffin-lim": _build_griffin_lim,
    "hifigan": _build_hifigan,
}


def build_vocoder(name: str, path: str | os.PathLike | None = None, mel_config: MelConfig | None = None) -> nn.Module:
    """Vocoder by registry name (``griffin-lim``, ``hifigan``); ``path`` is a local weights folder where needed."""
    if name not in VOCODERS:
        raise ValueError(f"vocoder name must be one of {sorted(VOCODERS)}, got {name!r}")
    return VOCODERS[name](None if path is None else str(path), mel_config)
