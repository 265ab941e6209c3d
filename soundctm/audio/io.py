"""Audio I/O: load (soundfile), mono mix-down, resampling (soxr), normalisation, cropping, peak-safe saving.

Waves are float32 numpy arrays; mono is ``[T]``, multichannel is ``[T, C]`` (soundfile's layout).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

_EPS = 1e-12
# file suffix -> (soundfile format, subtype) that save_audio writes
AUDIO_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}


class AudioLoadError(ValueError):
    """A file could not be read as audio (missing, corrupt or empty); the message names the file."""


def _check_sample_rate(name: str, sample_rate: int) -> int:
    """Return ``sample_rate`` as int or raise a ValueError naming the argument."""
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"{name} must be a positive integer (Hz), got {sample_rate!r}")
    return int(sample_rate)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Average channels: ``[T, C] -> [T]``; a ``[T]`` wave is returned as float32 unchanged."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        return wave
    if wave.ndim != 2:
        raise ValueError(f"wave must be [T] or [T, C], got shape {wave.shape}")
    return wave.mean(axis=1, dtype=np.float32)


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``[T]`` or ``[T, C]`` from ``sr_in`` to ``sr_out`` Hz with soxr (high quality)."""
    sr_in, sr_out = _check_sample_rate("sr_in", sr_in), _check_sample_rate("sr_out", sr_out)
    wave = np.asarray(wave, dtype=np.float32)
    if sr_in == sr_out or wave.shape[0] == 0:
        return wave
    return soxr.resample(wave, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, mono: bool = True) -> np.ndarray:
    """Read a file as float32 at ``sample_rate``: ``[T]`` if ``mono`` else ``[T, C]``."""
    sample_rate = _check_sample_rate("sample_rate", sample_rate)
    path = Path(path)
    if not path.is_file():
        raise AudioLoadError(f"audio file not found: {path}")
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioLoadError(f"cannot read audio file {path}: {err}") from err
    if wave.shape[0] == 0:
        raise AudioLoadError(f"audio file is empty (0 samples): {path}")
    wave = to_mono(wave) if mono else wave
    return resample(wave, sr, sample_rate)


def peak_normalize(wave: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale so that max |wave| = ``peak``; an all-zero wave is returned unchanged."""
    if not 0.0 < peak <= 1.0:
        raise ValueError(f"peak must be in (0, 1], got {peak}")
    wave = np.asarray(wave, dtype=np.float32)
    top = float(np.max(np.abs(wave))) if wave.size else 0.0
    return wave if top < _EPS else (wave * (peak / top)).astype(np.float32)


def rms_db(wave: np.ndarray) -> float:
    """Root-mean-square level in dB full scale: 20·log10(sqrt(mean(x²))), floored at -240 dB."""
    wave = np.asarray(wave, dtype=np.float64)
    rms = float(np.sqrt(np.mean(wave**2))) if wave.size else 0.0
    return 20.0 * float(np.log10(max(rms, _EPS)))


def is_silent(wave: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True if the RMS level is below ``threshold_db`` dBFS (empty waves are silent)."""
    return rms_db(wave) < threshold_db


def crop_or_pad(wave: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """Take ``length`` samples starting at ``offset`` along axis 0, zero-padding past the end."""
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    wave = np.asarray(wave, dtype=np.float32)
    piece = wave[offset : offset + length]
    missing = length - piece.shape[0]
    if missing == 0:
        return piece.copy()
    pad = [(0, missing)] + [(0, 0)] * (wave.ndim - 1)
    return np.pad(piece, pad)


def audio_format(path: str | os.PathLike) -> tuple[str, str]:
    """(soundfile format, subtype) that the path's suffix names; a ValueError naming the allowed suffixes."""
    suffix = Path(path).suffix.lower()
    if suffix not in AUDIO_FORMATS:
        raise ValueError(f"an audio file name must end in one of {', '.join(AUDIO_FORMATS)} (the format written), "
                         f"got {str(path)!r}")
    return AUDIO_FORMATS[suffix]


def save_audio(path: str | os.PathLike, wave: np.ndarray, sample_rate: int) -> Path:
    """Write ``[T]`` or ``[T, C]`` in the format the suffix names (``AUDIO_FORMATS``: 16-bit wav/flac, ogg vorbis,
    mp3), clipping to [-1, 1]; returns the path."""
    sample_rate = _check_sample_rate("sample_rate", sample_rate)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim not in (1, 2):
        raise ValueError(f"wave must be [T] or [T, C], got shape {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise ValueError("wave contains NaN or inf samples")
    path = Path(path)
    file_format, subtype = audio_format(path)
    if not path.parent.is_dir():
        raise OSError(f"cannot write audio to {path}: directory {path.parent} does not exist")
    try:
        sf.write(str(path), np.clip(wave, -1.0, 1.0), sample_rate, subtype=subtype, format=file_format)
    except (sf.LibsndfileError, RuntimeError, PermissionError) as err:
        raise OSError(f"cannot write audio to {path}: {err}") from err
    return path
