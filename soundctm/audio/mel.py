"""Log-mel front-end in torch, AudioLDM-compatible (Liu et al. 2023: 16 kHz, 64 mel bins, hop 160).

STFT magnitude (power 1) of a centred, reflect-padded Hann-windowed frame, Slaney mel filters from librosa,
natural-log compression ``log(clamp(x, 1e-5))``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import librosa
import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class MelConfig:
    """Settings of the mel front-end; defaults are AudioLDM's."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 160
    win_length: int = 1024
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float = 8000.0
    power: float = 1.0
    clamp_min: float = 1e-5

    def __post_init__(self):
        for name in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MelConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.win_length > self.n_fft:
            raise ValueError(f"MelConfig.win_length must be <= n_fft={self.n_fft}, got {self.win_length}")
        if not 0.0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(
                f"MelConfig needs 0 <= fmin < fmax <= sample_rate/2={self.sample_rate / 2}, "
                f"got fmin={self.fmin}, fmax={self.fmax}"
            )
        if self.power not in (1.0, 2.0):
            raise ValueError(f"MelConfig.power must be 1.0 (magnitude) or 2.0 (power), got {self.power}")
        if self.clamp_min <= 0:
            raise ValueError(f"MelConfig.clamp_min must be > 0, got {self.clamp_min}")

    @property
    def n_freqs(self) -> int:
        """Number of linear STFT bins, n_fft // 2 + 1."""
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        """Frames of a centred STFT: 1 + n_samples // hop_length."""
        return 1 + n_samples // self.hop_length

    def n_samples(self, n_frames: int) -> int:
        """Samples covered by ``n_frames`` centred frames: (n_frames - 1) · hop_length."""
        return (n_frames - 1) * self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)


def mel_filterbank(config: MelConfig) -> torch.Tensor:
    """Slaney-normalised mel filters from librosa (as AudioLDM): ``[n_mels, n_fft // 2 + 1]``."""
    fb = librosa.filters.mel(
        sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax
    )
    return torch.from_numpy(np.asarray(fb, dtype=np.float32))


def log_compress(mel: torch.Tensor, clamp_min: float = 1e-5) -> torch.Tensor:
    """Dynamic-range compression log(clamp(x, clamp_min))."""
    return torch.log(torch.clamp(mel, min=clamp_min))


def mel_frame_levels_db(log_mel: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """Per-frame level in dB of a log-mel ``[B, n_mels, F]`` → ``[B, F]``: 10·log10 of the band power summed over
    the bands, a mel of |STFT|^power raised to 2 / power to give power. Differentiable (a log-sum-exp)."""
    return (10.0 / math.log(10.0)) * torch.logsumexp(log_mel * (2.0 / power), dim=1)


class MelSpectrogram(nn.Module):
    """Wave ``[B, T]`` (or ``[T]``) → log-mel ``[B, n_mels, 1 + T // hop]`` (filters: non-saved buffers)."""

    def __init__(self, config: MelConfig | None = None):
        super().__init__()
        self.config = config or MelConfig()
        self.register_buffer("mel_basis", mel_filterbank(self.config), persistent=False)
        self.register_buffer("window", torch.hann_window(self.config.win_length), persistent=False)

    def spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """|STFT|^power of a centred, reflect-padded STFT: ``[B, T] -> [B, n_fft//2+1, frames]``."""
        c = self.config
        spec = torch.stft(
            wave.float(), n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
            window=self.window, center=True, pad_mode="reflect", return_complex=True,
        )  # fmt: skip
        return spec.abs().pow(c.power)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        if wave.dim() != 2:
            raise ValueError(f"wave must be [B, T] or [T], got shape {tuple(wave.shape)}")
        if wave.shape[-1] <= self.config.n_fft // 2:
            raise ValueError(
                f"wave must have more than n_fft/2={self.config.n_fft // 2} samples, got {wave.shape[-1]}"
            )
        mel = torch.matmul(self.mel_basis, self.spectrogram(wave))
        return log_compress(mel, self.config.clamp_min)
