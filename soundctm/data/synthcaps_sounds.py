"""Waveform synthesis of SynthCaps clips: one small function per sound source, then mixing.

`synthesize(attrs, rng, sr)` renders an attribute dict (see `soundctm.data.synthcaps`) into a float32 mono
clip. All numbers that the caption talks about (f0, onsets, level, sweep end points) come from `attrs`;
`rng` only draws the texture (noise, decay times), so the attributes fully determine what is measured.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.signal import butter, fftconvolve, lfilter

SECOND_SOURCE_REL_DB = -20.0  # a second ("X and Y") source sits this far below the main one
BACKGROUND_REL_DB = -25.0  # background noise level relative to the main source
REVERB_WET_GAIN = 0.4  # wet / dry amplitude of the hall reverberation
EDGE_RAMP_S = 0.01
FRAME_S = 0.064  # a clip's level is that of its loudest frame of this length (the judge's analysis window) ...
HOP_S = 0.016  # ... taken every this many seconds (the judge's analysis hop)


def raised_cosine_envelope(n: int, sr: int, ramp_s: float = EDGE_RAMP_S) -> np.ndarray:
    """Gain [n]: half-Hann ramps of ramp_s at both ends, 1 in between."""
    r = max(1, min(int(ramp_s * sr), n // 2))
    env = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
    env[:r], env[n - r :] = ramp, ramp[::-1]
    return env


def decay(n: int, sr: int, t60_s: float) -> np.ndarray:
    """Exponential amplitude decay reaching -60 dB after t60_s: [n]."""
    return np.exp(-6.9078 * np.arange(n) / (sr * t60_s))


def partials(freqs: np.ndarray, amps: np.ndarray, t60s: np.ndarray, n: int, sr: int) -> np.ndarray:
    """Sum of decaying sines, sum_k a_k exp(-6.9 t / T60_k) sin(2 pi f_k t), partials above 0.45 sr dropped."""
    keep = freqs < 0.45 * sr
    t = np.arange(n) / sr
    sines = np.sin(2 * np.pi * freqs[keep, None] * t) * np.exp(-6.9078 * t / t60s[keep, None])
    return amps[keep] @ sines


def attack(n: int, sr: int, attack_s: float = 0.003) -> np.ndarray:
    """Short linear attack ramp (avoids a click at each onset): [n]."""
    return np.minimum(1.0, np.arange(n) / max(1.0, attack_s * sr))


# ---- event sources: one function per source, (f0, sr, rng) -> one event [n] ----


def beep_event(f0: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Sine tone of 0.15-0.3 s with 10 ms ramps."""
    n = int(rng.uniform(0.15, 0.3) * sr)
    return np.sin(2 * np.pi * f0 * np.arange(n) / sr) * raised_cosine_envelope(n, sr)


def buzzer_event(f0: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Band-limited square wave (odd harmonics, 1/k amplitudes) of 0.15-0.3 s."""
    n = int(rng.uniform(0.15, 0.3) * sr)
    k = np.arange(1, int(0.45 * sr / f0) + 1, 2, dtype=float)
    wave = partials(k * f0, 1.0 / k, np.full(len(k), 1e9), n, sr)
    return wave * raised_cosine_envelope(n, sr)


def bell_event(f0: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Inharmonic partials (free-bar mode ratios 1, 2.76, 5.40, 8.93) with a long decay (T60 0.8-1.2 s)."""
    t60 = rng.uniform(0.8, 1.2)
    ratios = np.array([1.0, 2.756, 5.404, 8.933])
    wave = partials(f0 * ratios, np.array([1.0, 0.5, 0.3, 0.15]), t60 / ratios**0.5, int(t60 * sr), sr)
    return wave * attack(len(wave), sr)


def pluck_event(f0: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Plucked string: 8 harmonics with 1/k^2 amplitudes, higher ones decaying faster (T60 0.4-0.7 s)."""
    t60 = rng.uniform(0.4, 0.7)
    k = np.arange(1, 9, dtype=float)
    wave = partials(k * f0, k**-2.0, t60 / k**0.7, int(t60 * sr), sr)
    return wave * attack(len(wave), sr)


def drum_event(f0: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Pitch-dropping thump (about 160 -> 40 Hz within 50 ms) with a noisy click at the attack."""
    n = int(0.4 * sr)
    t = np.arange(n) / sr
    f_start, f_end = rng.uniform(140, 180), rng.uniform(35, 45)
    freq = f_end + (f_start - f_end) * np.exp(-t / 0.025)
    thump = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.1)
    click = 0.5 * rng.standard_normal(n) * np.exp(-t / 0.004)
    return (thump + click) * attack(n, sr, 0.001)


def knock_event(f0: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Short broadband click: band-passed (200-5000 Hz) noise burst with an 8-12 ms decay."""
    n = int(0.08 * sr)
    burst = rng.standard_normal(n) * np.exp(-np.arange(n) / (rng.uniform(0.008, 0.012) * sr))
    b, a = butter(2, [200 / (sr / 2), min(5000 / (sr / 2), 0.95)], btype="band")
    return lfilter(b, a, burst) * attack(n, sr, 0.0005)


def bird_event(f0: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Bird chirp: 0.1-0.15 s whistle at 2.8-3.6 kHz gliding up by 10 %, Hann-shaped."""
    n = int(rng.uniform(0.1, 0.15) * sr)
    f_start = rng.uniform(2800, 3600)
    freq = f_start * 1.1 ** (np.arange(n) / n)
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.hanning(n)


EVENT_SOURCES: dict[str, Callable[[float, int, np.random.Generator], np.ndarray]] = {
    "beep": beep_event,
    "buzzer": buzzer_event,
    "bell": bell_event,
    "pluck": pluck_event,
    "drum": drum_event,
    "knock": knock_event,
    "bird": bird_event,
}


def place_events(source: str, f0: float, onsets_s, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Clip [n] with one event of `source` starting at each onset (events cut at the clip end)."""
    out = np.zeros(n)
    for onset in onsets_s:
        start = int(round(onset * sr))
        event = EVENT_SOURCES[source](f0, sr, rng)[: n - start]
        out[start : start + len(event)] += event
    return out


# ---- continuous sources: (attrs, n, sr, rng) -> clip [n] ----


def siren_clip(attrs: dict, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Siren: tone with 2nd/3rd harmonics gliding exponentially from sweep_hz[0] to sweep_hz[1]."""
    f_start, f_end = attrs["sweep_hz"]
    freq = f_start * (f_end / f_start) ** (np.arange(n) / n)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.15 * np.sin(3 * phase)


def hiss_clip(attrs: dict, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Hiss: white noise, gently high-passed at 500 Hz."""
    b, a = butter(1, 500 / (sr / 2), btype="high")
    return lfilter(b, a, rng.standard_normal(n))


def rumble_clip(attrs: dict, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Rumble: brown noise (leaky integral of white noise) band-limited to 25-250 Hz."""
    brown = lfilter([1.0], [1.0, -0.995], rng.standard_normal(n))
    b, a = butter(2, [25 / (sr / 2), 250 / (sr / 2)], btype="band")
    return lfilter(b, a, brown)


def rain_clip(attrs: dict, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Rain: dense random drops (about 400 / s, band-passed clicks, 20 dB amplitude spread) over a noise bed."""
    drops = np.zeros(n)
    where = rng.integers(0, n, size=int(400 * n / sr))
    drops[where] = rng.choice([-1.0, 1.0], len(where)) * 10 ** rng.uniform(-1, 0, len(where))
    b, a = butter(2, [800 / (sr / 2), min(6000 / (sr / 2), 0.95)], btype="band")
    return lfilter(b, a, 4 * drops + 0.3 * rng.standard_normal(n))


CONTINUOUS_SOURCES: dict[str, Callable[[dict, int, int, np.random.Generator], np.ndarray]] = {
    "siren": siren_clip,
    "hiss": hiss_clip,
    "rumble": rumble_clip,
    "rain": rain_clip,
}


# ---- effects and mixing ----


def hall_reverb(wave: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Large-hall reverberation: dry + REVERB_WET_GAIN * (wave * exponentially decaying noise, T60 0.8-1.2 s)."""
    t60 = rng.uniform(0.8, 1.2)
    ir = rng.standard_normal(int(t60 * sr)) * decay(int(t60 * sr), sr, t60)
    ir /= np.sqrt(np.sum(ir**2))
    return wave + REVERB_WET_GAIN * fftconvolve(wave, ir)[: len(wave)]


def fade_gain(direction: str, n: int) -> np.ndarray:
    """Linear fade over the first (in) or last (out) 75 % of the clip: [n]."""
    ramp = np.minimum(1.0, np.arange(n) / (0.75 * n))
    return ramp if direction == "in" else ramp[::-1]


def background_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Soft pinkish background noise (white noise through a one-pole low-pass)."""
    return lfilter([0.2], [1.0, -0.8], rng.standard_normal(n))


# ---- levels: what `level_db` in a clip's attributes means (soundctm.metrics.synthcaps_judge reads it back)

def analysis_sizes(sr: int) -> tuple[int, int]:
    """(window, hop) in samples for a sample rate."""
    return int(round(FRAME_S * sr)), int(round(HOP_S * sr))


def frame_levels_db(wave: np.ndarray, sr: int) -> np.ndarray:
    """Short-time RMS level per frame (the judge's frames too), 10 log10 mean(x^2): [T] -> [n_frames]."""
    frame, hop = analysis_sizes(sr)
    padded = np.pad(np.asarray(wave, dtype=np.float64) ** 2, (frame // 2, frame // 2))
    csum = np.concatenate([[0.0], np.cumsum(padded)])
    starts = np.arange(0, len(padded) - frame + 1, hop)
    return 10 * np.log10(np.maximum(csum[starts + frame] - csum[starts], 0.0) / frame + 1e-12)


def level_db(wave: np.ndarray, sr: int) -> float:
    """Level of a clip: the loudest 64-ms frame RMS in dBFS."""
    return float(frame_levels_db(wave, sr).max())


def scale_to_level(wave: np.ndarray, sr: int, target_db: float) -> np.ndarray:
    """Scale so that `level_db` (loudest 64-ms frame RMS) equals target_db."""
    return wave * 10 ** ((target_db - level_db(wave, sr)) / 20)


def render_source(source: str, attrs: dict, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The bare (unscaled) sound of one source for a clip of n samples."""
    if source in EVENT_SOURCES:
        return place_events(source, attrs.get("f0_hz") or 0.0, attrs["onsets_s"], n, sr, rng)
    return CONTINUOUS_SOURCES[source](attrs, n, sr, rng) * raised_cosine_envelope(n, sr)


def synthesize(attrs: dict, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """Render an attribute dict into a float32 mono clip [round(duration_s * sr)]."""
    n = int(round(attrs["duration_s"] * sr))
    main = render_source(attrs["source"], attrs, n, sr, rng)
    if attrs.get("fade"):
        main = main * fade_gain(attrs["fade"], n)
    if attrs.get("reverb"):
        main = hall_reverb(main, sr, rng)
    wave = scale_to_level(main, sr, attrs["level_db"])
    if attrs.get("second_source"):
        second = render_source(attrs["second_source"], {}, n, sr, rng)
        wave = wave + scale_to_level(second, sr, attrs["level_db"] + SECOND_SOURCE_REL_DB)
    if attrs.get("background"):
        wave = wave + scale_to_level(background_noise(n, rng), sr, attrs["level_db"] + BACKGROUND_REL_DB)
    return wave.astype(np.float32)
