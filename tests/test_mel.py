import librosa
import numpy as np
import pytest
import torch

from soundctm.audio.mel import MelConfig, MelSpectrogram, log_compress, mel_filterbank


def _chirp(sr=16000, seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    chirp = 0.4 * np.sin(2 * np.pi * (200 * t + 1500 * t**2))
    return (chirp + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)


def _librosa_logmel(wave, c: MelConfig):
    mel = librosa.feature.melspectrogram(
        y=wave, sr=c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
        window="hann", center=True, pad_mode="reflect", power=c.power,
        n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax,
    )  # fmt: skip
    return np.log(np.maximum(mel, c.clamp_min))


def test_audioldm_defaults():
    c = MelConfig()
    assert (c.sample_rate, c.n_fft, c.hop_length, c.win_length, c.n_mels) == (16000, 1024, 160, 1024, 64)
    assert (c.fmin, c.fmax, c.clamp_min) == (0.0, 8000.0, 1e-5)


@pytest.mark.parametrize("config", [MelConfig(), MelConfig(n_mels=80, fmin=30.0, fmax=7600.0, power=2.0)])
def test_matches_librosa_melspectrogram(config):
    wave = _chirp()
    ref = _librosa_logmel(wave, config)
    ours = MelSpectrogram(config)(torch.from_numpy(wave)[None])[0].numpy()
    assert ours.shape == ref.shape == (config.n_mels, config.n_frames(len(wave)))
    assert np.abs(ours - ref).max() < 1e-3


def test_batched_equals_one_by_one():
    waves = torch.from_numpy(np.stack([_chirp(seed=s) for s in range(3)]))
    mel = MelSpectrogram()
    batched = mel(waves)
    single = torch.cat([mel(w) for w in waves])
    assert batched.shape == (3, 64, 101)
    assert torch.allclose(batched, single, atol=1e-5)


def test_filterbank_is_slaney_normalised():
    c = MelConfig()
    fb = mel_filterbank(c).numpy()
    ref = librosa.filters.mel(
        sr=16000, n_fft=1024, n_mels=64, fmin=0.0, fmax=8000.0, htk=False, norm="slaney"
    )
    assert np.allclose(fb, ref, atol=1e-7)
    # Slaney norm: each triangle has unit area on the Hz axis (Riemann sum over the FFT bins)
    area = fb.sum(axis=1) * c.sample_rate / c.n_fft
    assert np.allclose(area, 1.0, rtol=0.03)


def test_silence_hits_clamp_floor():
    out = MelSpectrogram()(torch.zeros(1, 4000))
    assert torch.allclose(out, torch.full_like(out, np.log(1e-5)))
    assert torch.equal(
        log_compress(torch.tensor([0.0, 1.0])), torch.tensor([np.log(1e-5), 0.0], dtype=torch.float32)
    )


def test_buffers_follow_module_and_are_not_saved():
    mel = MelSpectrogram().to(torch.float64)
    assert mel.state_dict() == {}
    assert mel.mel_basis.dtype == torch.float64


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="fmax"):
        MelConfig(fmax=9000.0)
    with pytest.raises(ValueError, match="hop_length"):
        MelConfig(hop_length=0)
    with pytest.raises(ValueError, match="wave"):
        MelSpectrogram()(torch.zeros(1, 2, 3000))
