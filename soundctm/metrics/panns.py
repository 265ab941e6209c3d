"""PANNs Cnn14 (Kong et al. 2020, "PANNs: Large-Scale Pretrained Audio Neural Networks"): AudioSet tagger/embedder.

Front-end: 32 kHz mono, 1024-point Hann STFT (centred, reflect padding) every 320 samples, power spectrum, 64 Slaney
mel bands over 50–14000 Hz, 10·log10(max(·, 1e-10)) dB. Network: BatchNorm over mel bins, six conv blocks
(two 3×3 conv → BN → ReLU, then 2×2 average pooling; none after the last) of widths 64 … 2048, mean over
frequency, max + mean over time, fc1 + ReLU → 2048-D embedding, fc_audioset → 527 AudioSet logits (sigmoid outputs).

``load_cnn14(path)`` reads the public ``Cnn14_mAP=0.431.pth``-style checkpoint (state dict under key ``model``): the
module names below are the checkpoint's, the STFT kernels are dropped (torch.stft computes the same transform) and
``logmel_extractor.melW`` becomes our ``mel_basis`` buffer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Cnn14Config:
    """Front-end and widths; defaults are the released 32 kHz Cnn14's."""

    sample_rate: int = 32000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    channels: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    num_classes: int = 527


# Kong et al. 2020 also release a 16 kHz Cnn14 (``Cnn14_16k_mAP=0.438.pth``, the one AudioLDM's evaluation uses).
CNN14_16K = Cnn14Config(sample_rate=16000, n_fft=512, hop_length=160, fmax=8000.0)
PRESETS_BY_FFT_BINS = {513: Cnn14Config(), 257: CNN14_16K}


def slaney_mel_basis(config: Cnn14Config) -> torch.Tensor:
    """librosa's Slaney-normalised mel filters, transposed to ``[n_fft // 2 + 1, n_mels]``."""
    import librosa

    basis = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                                fmin=config.fmin, fmax=config.fmax)
    return torch.from_numpy(basis.T).float()


def log_mel_db(wave: torch.Tensor, config: Cnn14Config, mel_basis: torch.Tensor) -> torch.Tensor:
    """10·log10(max(|STFT|² · M, 1e-10)) of ``[B, T]`` → ``[B, frames, n_mels]``."""
    window = torch.hann_window(config.n_fft, periodic=True, dtype=wave.dtype, device=wave.device)
    spec = torch.stft(wave, config.n_fft, config.hop_length, window=window, center=True, pad_mode="reflect",
                      return_complex=True)
    power = spec.real**2 + spec.imag**2  # [B, F, frames]
    return 10.0 * torch.log10(torch.clamp(power.transpose(1, 2) @ mel_basis, min=1e-10))


def min_samples(config: Cnn14Config) -> int:
    """Fewest samples for one frame to survive the five 2× time poolings: 2⁵ frames."""
    return 2 ** (len(config.channels) - 1) * config.hop_length


class ConvBlock(nn.Module):
    """(3×3 conv → BN → ReLU) × 2, then ``pool`` × ``pool`` average pooling."""

    def __init__(self, c_in: int, c_out: int, pool: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(c_out), nn.BatchNorm2d(c_out)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, T, F]`` → ``[B, C_out, T // pool, F // pool]``."""
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.avg_pool2d(x, self.pool) if self.pool > 1 else x


@dataclass(frozen=True)
class Cnn14Output:
    """Clip embedding ``[B, C_last]`` and AudioSet logits ``[B, num_classes]`` (sigmoid gives probabilities)."""

    embedding: torch.Tensor
    logits: torch.Tensor


class Cnn14(nn.Module):
    """Cnn14 on raw 32 kHz waves ``[B, T]`` (clips shorter than 2⁵ frames are zero-padded)."""

    def __init__(self, config: Cnn14Config = Cnn14Config()):
        super().__init__()
        self.config = config
        ch = config.channels
        self.bn0 = nn.BatchNorm2d(config.n_mels)
        for i, (c_in, c_out) in enumerate(zip((1, *ch[:-1]), ch), start=1):
            self.add_module(f"conv_block{i}", ConvBlock(c_in, c_out, pool=2 if i < len(ch) else 1))
        self.fc1 = nn.Linear(ch[-1], ch[-1])
        self.fc_audioset = nn.Linear(ch[-1], config.num_classes)
        self.register_buffer("mel_basis", slaney_mel_basis(config))

    def blocks(self) -> list[ConvBlock]:
        """The conv blocks in order."""
        return [getattr(self, f"conv_block{i}") for i in range(1, len(self.config.channels) + 1)]

    def forward(self, wave: torch.Tensor) -> Cnn14Output:
        """Embedding (global max + mean pooled conv features through fc1) and logits of ``[B, T]``."""
        if wave.shape[-1] < min_samples(self.config):
            wave = F.pad(wave, (0, min_samples(self.config) - wave.shape[-1]))
        x = log_mel_db(wave, self.config, self.mel_basis)  # [B, T, M]
        x = self.bn0(x.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2).unsqueeze(1)  # BN per mel bin
        for block in self.blocks():
            x = block(x)
        x = x.mean(dim=3)  # [B, C, T']
        x = x.amax(dim=2) + x.mean(dim=2)
        embedding = F.relu(self.fc1(x))
        return Cnn14Output(embedding=embedding, logits=self.fc_audioset(embedding))


def config_from_checkpoint(state: dict[str, torch.Tensor], base: Cnn14Config = Cnn14Config()) -> Cnn14Config:
    """Widths, mel bins, FFT size and class count read off a Cnn14 state dict; rates/band edges from ``base``."""
    n_blocks = sum(1 for k in state if k.startswith("conv_block") and k.endswith(".conv1.weight"))
    channels = tuple(state[f"conv_block{i}.conv1.weight"].shape[0] for i in range(1, n_blocks + 1))
    n_fft = (state["logmel_extractor.melW"].shape[0] - 1) * 2 if "logmel_extractor.melW" in state else base.n_fft
    return Cnn14Config(sample_rate=base.sample_rate, n_fft=n_fft, hop_length=base.hop_length,
                       n_mels=state["bn0.weight"].shape[0], fmin=base.fmin, fmax=base.fmax,
                       channels=channels, num_classes=state["fc_audioset.weight"].shape[0])


def from_checkpoint_names(state: dict[str, torch.Tensor], model: Cnn14) -> dict[str, torch.Tensor]:
    """Checkpoint keys → ours: drop STFT kernels, rename melW (or keep our own filters when absent)."""
    out = {k: v for k, v in state.items() if not k.startswith(("spectrogram_extractor.", "logmel_extractor."))}
    out["mel_basis"] = state.get("logmel_extractor.melW", model.mel_basis)
    return out


def to_checkpoint(model: Cnn14) -> dict[str, dict[str, torch.Tensor]]:
    """Our weights in the public checkpoint layout ``{"model": state_dict}`` (melW under its original name)."""
    state = dict(model.state_dict())
    state["logmel_extractor.melW"] = state.pop("mel_basis")
    return {"model": state}


def load_cnn14(path: str | os.PathLike, base: Cnn14Config | None = None) -> Cnn14:
    """Load a ``Cnn14_mAP=0.431.pth``-style checkpoint (``weights_only=True``; state dict under ``model``).

    Rates and band edges come from ``base``; by default the 32 kHz or 16 kHz preset, told apart by the FFT bins of
    the stored mel filters.
    """
    if not os.path.isfile(path):
        raise ValueError(f"path must be an existing Cnn14 checkpoint file (.pth), got {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("model", checkpoint)
    if "fc_audioset.weight" not in state or "bn0.weight" not in state:
        raise ValueError(f"{path} is not a Cnn14 checkpoint: 'bn0.weight'/'fc_audioset.weight' missing")
    if base is None:
        bins = state["logmel_extractor.melW"].shape[0] if "logmel_extractor.melW" in state else 513
        base = PRESETS_BY_FFT_BINS.get(bins, Cnn14Config())
    model = Cnn14(config_from_checkpoint(state, base))
    model.load_state_dict(from_checkpoint_names(state, model))
    return model.eval()
