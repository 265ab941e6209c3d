"""Plots people would rather look at than numbers: mel spectrograms of generated audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def mel_image(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log-mel ``[n_mels, frames]`` of one waveform with the project's mel front-end."""
    import torch

    from soundctm.audio.mel import MelConfig, MelSpectrogram

    mel = MelSpectrogram(MelConfig(sample_rate=sample_rate))
    with torch.no_grad():
        return mel(torch.as_tensor(wave, dtype=torch.float32)[None])[0].numpy()


def save_mel_png(wave: np.ndarray, sample_rate: int, path: str | Path, title: str = "") -> Path:
    """Write a mel-spectrogram PNG (time in seconds, mel bins) of one waveform."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = mel_image(wave, sample_rate)
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.imshow(m, origin="lower", aspect="auto", cmap="magma", vmin=max(m.min(), m.max() - 10),
              extent=(0, len(wave) / sample_rate, 0, m.shape[0]))
    ax.set_xlabel("time [s]")
    ax.set_ylabel("mel bin")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
