"""The SynthCaps judge: measure a waveform with plain signal processing and judge it against SynthCaps attributes.

Everything is computed from one short-time analysis (64 ms Hann frames, 16 ms hop): a level envelope, power
spectra, 64 mel-band energies and a per-frame dominant frequency. The estimators are deliberately coarse
(pitch classes with wide gaps, tonality judged at 64-mel resolution, onset counting on a smoothed energy
envelope, a line fit for sweeps) so that they also work on smeared audio, e.g. a generated clip that went
through a mel VAE and a Griffin-Lim vocoder.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from soundctm.data.synthcaps_sounds import analysis_sizes, frame_levels_db

PITCH_BOUNDS_HZ = (310.0, 880.0)  # low | medium | high (generator ranges 130-240, 400-700, 1100-2600 Hz)
JUDGED_ATTRIBUTES = ("family", "pitch", "count", "sweep", "loudness")  # what the audio judge scores (not fade)
LOUDNESS_THRESHOLD_DB = -31.0  # quiet | loud (generator levels -42..-38 and -24..-20 dBFS)
SWEEP_THRESHOLD_OCT_PER_S = 0.25  # |slope| above this is a rising / falling sweep
FADE_THRESHOLD_DB = 6.0  # last third minus first third of the clip
TONAL_THRESHOLD = 0.5  # energy fraction in prominent mel-band peaks
ACTIVE_RANGE_DB = 15.0  # a frame is active within this many dB of the loudest frame
ONSET_RISE_DB = 8.0  # an onset is a rise of at least this much ...
ONSET_LOOKBACK_S = 0.1  # ... above the minimum of the preceding window ...
ONSET_RANGE_DB = 12.0  # ... reaching within this many dB of the loudest frame
ONSET_MERGE_S = 0.15  # rises closer than this belong to one event
N_MELS = 64  # tonality is judged on the mel resolution that a generated clip went through
PEAK_PROMINENCE_DB = 10.0  # a tonal mel band stands this far above a band ...
VALLEY_BANDS = 4  # ... within this many bands on each side
MIN_TONAL_F0_HZ = 75.0  # a peak below this (a drum thump) does not make a sound tonal
NOISE_MIN_ACTIVE = 0.65  # a non-tonal sound active at least this long is noise, else impact
F0_RANGE_HZ = (30.0, 5000.0)
EPS = 1e-12

# What each source sounds like to the measurements: tonal (a clear spectral peak), noise (continuous,
# no peak) or impact (short non-tonal events).
SOURCE_FAMILY: dict[str, str] = {
    "beep": "tonal",
    "buzzer": "tonal",
    "bell": "tonal",
    "pluck": "tonal",
    "siren": "tonal",
    "bird": "tonal",
    "drum": "impact",
    "knock": "impact",
    "hiss": "noise",
    "rumble": "noise",
    "rain": "noise",
}


@dataclass(frozen=True)
class Measurement:
    """What `measure` reads off a clip (levels in dBFS of RMS, frequencies in Hz, times in s)."""

    level_db: float  # loudest 64-ms frame
    n_events: int
    onsets_s: tuple[float, ...]
    active_fraction: float  # frames within ACTIVE_RANGE_DB of the loudest
    tonality: float  # energy fraction in prominent spectral peaks, active frames
    f0_hz: float  # median dominant tonal peak (nan when not tonal)
    pitch_class: str | None
    sweep_oct_per_s: float  # slope of log2 f0 over time
    sweep: str | None
    centroid_hz: float
    level_trend_db: float  # mean level of the last third minus the first third
    fade: str | None
    family: str  # tonal | noise | impact

    def to_dict(self) -> dict:
        return asdict(self)


def frame_signal(wave: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Zero-padded frames of a 1-D signal (a strided view): [T] -> [n_frames, frame], frame i centred at i*hop."""
    padded = np.pad(np.asarray(wave, dtype=np.float64), (frame // 2, frame // 2))
    return np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop]


def power_spectra(wave: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed power spectra [n_frames, n_bins] and bin frequencies [n_bins]."""
    frame, hop = analysis_sizes(sr)
    frames = (frame_signal(wave, frame, hop) * np.hanning(frame)).astype(np.float32)
    spectra = np.fft.rfft(frames, axis=1)
    return (spectra.real**2 + spectra.imag**2).astype(np.float64), np.fft.rfftfreq(frame, 1.0 / sr)


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear (3 / 200 mel per Hz) below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(f < 1000, 3 * f / 200, 15 + 27 * np.log(np.maximum(f, 1e-3) / 1000) / np.log(6.4))


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    """Inverse of hz_to_mel."""
    m = np.asarray(m, dtype=np.float64)
    return np.where(m < 15, 200 * m / 3, 1000 * 6.4 ** ((m - 15) / 27))


def mel_filterbank(freqs: np.ndarray, n_mels: int = N_MELS) -> np.ndarray:
    """Triangular mel filters from 0 Hz to freqs[-1], unnormalised (adjacent filters sum to 1): [n_mels, n_bins]."""
    centres = mel_to_hz(np.linspace(0, hz_to_mel(freqs[-1]), n_mels + 2))
    lower, centre, upper = centres[:-2, None], centres[1:-1, None], centres[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


@functools.lru_cache(maxsize=8)
def mel_band_slices(sr: int, frame: int) -> tuple[tuple[int, int, np.ndarray], ...]:
    """Non-zero part (lo, hi, weights) of each mel filter for an rfft of `frame` samples at sr (cached)."""
    fb = mel_filterbank(np.fft.rfftfreq(frame, 1.0 / sr))
    slices = []
    for row in fb:
        nz = np.flatnonzero(row)
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 0)
        slices.append((lo, hi, row[lo:hi]))
    return tuple(slices)


def mel_band_power(power: np.ndarray, sr: int) -> np.ndarray:
    """Mel band energies [F, N_MELS] of power spectra [F, frame // 2 + 1] (sparse, no large matmul)."""
    frame = 2 * (power.shape[1] - 1)
    return np.stack([power[:, lo:hi] @ w for lo, hi, w in mel_band_slices(sr, frame)], axis=1)


def tonal_band_mask(band_db: np.ndarray) -> np.ndarray:
    """Mel bands that are local maxima with a dip of PEAK_PROMINENCE_DB within VALLEY_BANDS on both sides: [F, B].

    A pure tone fills one or two adjacent bands (a few more once smeared), so the dip is searched up to
    VALLEY_BANDS bands away; edge bands are padded by replication and so never count.
    """
    w = VALLEY_BANDS
    pad = np.pad(band_db, ((0, 0), (w, w)), mode="edge")
    shifted = {j: pad[:, w + j : pad.shape[1] - w + j] for j in range(-w, w + 1)}
    left = np.min([shifted[-j] for j in range(1, w + 1)], axis=0)
    right = np.min([shifted[j] for j in range(1, w + 1)], axis=0)
    centre = shifted[0]
    local_max = (centre >= shifted[-1]) & (centre >= shifted[1])
    return local_max & (centre - np.maximum(left, right) >= PEAK_PROMINENCE_DB)


def tonal_fraction(band_power: np.ndarray) -> np.ndarray:
    """Per-frame fraction of mel energy in tonal peak bands and their direct neighbours: [F, B] -> [F]."""
    peaks = tonal_band_mask(10 * np.log10(band_power + EPS))
    near = peaks | np.pad(peaks[:, 1:], ((0, 0), (0, 1))) | np.pad(peaks[:, :-1], ((0, 0), (1, 0)))
    return np.sum(band_power * near, axis=1) / (np.sum(band_power, axis=1) + EPS)


def dominant_frequency(power: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Per-frame frequency of the strongest bin in F0_RANGE_HZ, parabolic-interpolated on log power."""
    lo, hi = np.searchsorted(freqs, F0_RANGE_HZ)
    k = lo + np.argmax(power[:, lo:hi], axis=1)
    rows = np.arange(len(k))
    a, b, c = (np.log(power[rows, k + j] + EPS) for j in (-1, 0, 1))
    shift = np.clip(0.5 * (a - c) / np.where(a - 2 * b + c == 0, -EPS, a - 2 * b + c), -0.5, 0.5)
    return (k + shift) * (freqs[1] - freqs[0])


def detect_onsets(levels_db: np.ndarray, hop_s: float) -> np.ndarray:
    """Onset frames: rises of ONSET_RISE_DB over the preceding ONSET_LOOKBACK_S, near the loudest frame.

    The clip start is not an onset (history is padded with the first frame), so a sound already playing when
    the clip begins, e.g. a background, is not counted.
    """
    top = levels_db.max()
    env = np.maximum(levels_db, top - 60.0)
    w = max(1, int(round(ONSET_LOOKBACK_S / hop_s)))
    history = np.concatenate([np.full(w, env[0]), env])
    windows = np.lib.stride_tricks.sliding_window_view(history[:-1], w)
    rise = env - windows.min(axis=1)
    candidates = np.flatnonzero((rise >= ONSET_RISE_DB) & (env >= top - ONSET_RANGE_DB))
    if len(candidates) == 0:
        return candidates
    gap = int(round(ONSET_MERGE_S / hop_s))
    starts = np.concatenate([[True], np.diff(candidates) > gap])
    return candidates[starts]


def sweep_slope(f0_track: np.ndarray, times: np.ndarray) -> float:
    """Least-squares slope of log2 f0 over time, in octaves per second (0 with fewer than 3 points)."""
    if len(f0_track) < 3 or np.ptp(times) == 0:
        return 0.0
    return float(np.polyfit(times, np.log2(f0_track), 1)[0])


def level_trend(levels_db: np.ndarray) -> float:
    """Mean frame level (floored 60 dB below the top) of the last third minus the first third."""
    env = np.maximum(levels_db, levels_db.max() - 60.0)
    third = max(1, len(env) // 3)
    return float(env[-third:].mean() - env[:third].mean())


def pitch_class_of(f0_hz: float) -> str | None:
    """Pitch class of a frequency: low < 310 Hz <= medium < 880 Hz <= high (bounds in the gaps between classes)."""
    if not np.isfinite(f0_hz):
        return None
    return "low" if f0_hz < PITCH_BOUNDS_HZ[0] else "medium" if f0_hz < PITCH_BOUNDS_HZ[1] else "high"


def sweep_class_of(slope: float) -> str | None:
    """rising / falling / None from a slope in octaves per second."""
    if slope > SWEEP_THRESHOLD_OCT_PER_S:
        return "rising"
    return "falling" if slope < -SWEEP_THRESHOLD_OCT_PER_S else None


def fade_class_of(trend_db: float) -> str | None:
    """in / out / None from the level trend in dB."""
    if trend_db > FADE_THRESHOLD_DB:
        return "in"
    return "out" if trend_db < -FADE_THRESHOLD_DB else None


def family_of(tonality: float, f0_hz: float, active_fraction: float) -> str:
    """tonal: peaky spectrum with f0 >= 75 Hz; else noise if active >= 65 % of the clip, else impact."""
    if tonality >= TONAL_THRESHOLD and f0_hz >= MIN_TONAL_F0_HZ:
        return "tonal"
    return "noise" if active_fraction >= NOISE_MIN_ACTIVE else "impact"


def measure(wave: np.ndarray, sr: int) -> Measurement:
    """All measurements of a mono clip [T] at sample rate sr."""
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    if wave.size == 0:
        raise ValueError("wave: expected a non-empty mono signal")
    hop_s = analysis_sizes(sr)[1] / sr
    levels = frame_levels_db(wave, sr)
    top = float(levels.max())
    active = levels >= top - ACTIVE_RANGE_DB
    power, freqs = power_spectra(wave, sr)
    energy = power.sum(axis=1) + EPS
    frame_tonal = tonal_fraction(mel_band_power(power, sr))
    tonality = float(np.sum((frame_tonal * energy)[active]) / np.sum(energy[active]))
    f0_frames = active & (frame_tonal >= TONAL_THRESHOLD)
    f0s = dominant_frequency(power[f0_frames], freqs) if f0_frames.any() else np.zeros(0)
    times = np.flatnonzero(f0_frames) * hop_s
    f0 = float(np.exp(np.median(np.log(f0s)))) if tonality >= TONAL_THRESHOLD and len(f0s) else float("nan")
    slope = sweep_slope(f0s, times) if np.isfinite(f0) else 0.0
    onsets = detect_onsets(levels, hop_s)
    centroid = float(np.sum(power[active] @ freqs) / np.sum(energy[active]))
    trend = level_trend(levels)
    active_fraction = float(active.mean())
    return Measurement(
        level_db=top,
        n_events=len(onsets),
        onsets_s=tuple(float(t) for t in onsets * hop_s),
        active_fraction=active_fraction,
        tonality=tonality,
        f0_hz=f0,
        pitch_class=pitch_class_of(f0),
        sweep_oct_per_s=slope,
        sweep=sweep_class_of(slope),
        centroid_hz=centroid,
        level_trend_db=trend,
        fade=fade_class_of(trend),
        family=family_of(tonality, f0, active_fraction),
    )


def judge(wave: np.ndarray, sr: int, attrs: dict) -> dict[str, bool]:
    """Per prompted attribute, whether the clip [T] matches it (see `judge_measurement`)."""
    return judge_measurement(measure(wave, sr), attrs)


def judge_scored(wave: np.ndarray, sr: int, attrs: dict) -> dict[str, bool]:
    """`judge` restricted to the attributes the audio judge scores (`JUDGED_ATTRIBUTES`: fade is measured, not
    scored)."""
    return {k: bool(ok) for k, ok in judge(wave, sr, attrs).items() if k in JUDGED_ATTRIBUTES}


def stated_attributes(attrs: dict) -> tuple[str, ...]:
    """The attributes a caption with these generation attributes states, in judging order (family, pitch, count,
    sweep, loudness, fade): those present (not None), and `family` only for single-source prompts, as a second
    source changes tonality and continuity. The keys `judge_measurement` returns."""
    family = ("family",) if attrs.get("source") in SOURCE_FAMILY and not attrs.get("second_source") else ()
    return family + tuple(k for k in ("pitch", "count", "sweep", "loudness", "fade") if attrs.get(k) is not None)


def prompted_attributes(attrs: dict) -> tuple[str, ...]:
    """The judged attributes (`JUDGED_ATTRIBUTES`) a caption with these generation attributes prompts, sorted: the
    keys `judge_scored` returns for it, known before any audio exists."""
    return tuple(sorted(k for k in stated_attributes(attrs) if k in JUDGED_ATTRIBUTES))


def judge_measurement(m: Measurement, attrs: dict) -> dict[str, bool]:
    """Per stated attribute (`stated_attributes`), whether a measurement matches it (keys: family, pitch, count,
    sweep, loudness, fade)."""
    checks = {
        "family": lambda: m.family == SOURCE_FAMILY[attrs["source"]],
        "pitch": lambda: m.pitch_class == attrs["pitch"],
        "count": lambda: m.n_events == int(attrs["count"]),
        "sweep": lambda: m.sweep == attrs["sweep"],
        "loudness": lambda: (m.level_db >= LOUDNESS_THRESHOLD_DB) == (attrs["loudness"] == "loud"),
        "fade": lambda: m.fade == attrs["fade"],
    }
    return {k: checks[k]() for k in stated_attributes(attrs)}
