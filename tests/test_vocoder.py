import numpy as np
import pytest
import torch

from soundctm.audio.mel import MelConfig, MelSpectrogram, mel_filterbank
from soundctm.audio.vocoder import (
    GriffinLimVocoder,
    HifiGanVocoder,
    build_vocoder,
    nnls_mel_to_linear,
)


def _tone(freq, seconds=1.0, sr=16000):
    t = np.arange(int(sr * seconds)) / sr
    return torch.tensor(0.5 * np.sin(2 * np.pi * freq * t), dtype=torch.float32)[None]


def _dominant_freq(wave, sr=16000):
    wave = wave.numpy()
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.argmax(spec) * sr / len(wave)


@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_griffin_lim_recovers_pure_tone_frequency(freq):
    mel = MelSpectrogram()(_tone(freq))
    wave = GriffinLimVocoder(n_iter=16)(mel)
    assert wave.shape == (1, MelConfig().n_samples(mel.shape[-1]))
    assert abs(_dominant_freq(wave[0]) - freq) / freq < 0.05  # the 5 % pitch target of the round trip


def test_griffin_lim_resynthesis_matches_input_mel_where_loud():
    mel_fn = MelSpectrogram()
    mel = mel_fn(_tone(700.0) + 0.3 * _tone(1900.0))
    back = mel_fn(GriffinLimVocoder(n_iter=32)(mel))
    loud = mel > mel.max() - 4.0  # within ~35 dB of the peak
    assert (back - mel)[loud].abs().mean() < 0.5
    assert abs(back.max() - mel.max()) < 0.3


def test_griffin_lim_is_deterministic_and_batched():
    mel = MelSpectrogram()(torch.cat([_tone(500.0), _tone(2000.0)]))
    vocoder = GriffinLimVocoder(n_iter=4)
    both = vocoder(mel)
    assert torch.allclose(both, vocoder(mel))
    assert both.shape[0] == 2
    assert abs(_dominant_freq(both[1]) - 2000.0) < 60


def test_nnls_is_nonnegative_and_reproduces_mel():
    basis = mel_filterbank(MelConfig())
    linear = torch.rand(2, basis.shape[1], 7)
    mel = basis @ linear
    x = nnls_mel_to_linear(mel, basis, n_iter=200)
    assert (x >= 0).all()
    assert torch.linalg.norm(basis @ x - mel) / torch.linalg.norm(mel) < 0.02


def _tiny_hifigan(tmp_path):
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(0)
    config = SpeechT5HifiGanConfig(
        model_in_dim=64, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False,
    )  # fmt: skip
    model = SpeechT5HifiGan(config).eval()
    model.save_pretrained(tmp_path / "vocoder")
    return model


def test_hifigan_tiny_round_trip_identical_outputs(tmp_path):
    model = _tiny_hifigan(tmp_path)
    mel = torch.randn(2, 64, 12)
    loaded = HifiGanVocoder.from_pretrained(tmp_path)  # pipeline-style root with vocoder/
    wave = loaded(mel)
    assert wave.shape == (2, 12 * 16)
    with torch.no_grad():
        assert torch.equal(wave, model(mel.transpose(1, 2)))
    assert loaded.sample_rate == 16000
    loaded.save_pretrained(tmp_path / "again")
    assert torch.equal(build_vocoder("hifigan", tmp_path / "again")(mel), wave)


def test_registry_and_bad_inputs(tmp_path):
    assert isinstance(build_vocoder("griffin-lim"), GriffinLimVocoder)
    assert build_vocoder("griffin-lim").sample_rate == 16000
    with pytest.raises(ValueError, match="vocoder name"):
        build_vocoder("wavenet")
    with pytest.raises(ValueError, match="path"):
        build_vocoder("hifigan")
    with pytest.raises(ValueError, match="config.json"):
        HifiGanVocoder.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="mel must be"):
        GriffinLimVocoder()(torch.zeros(1, 80, 10))
    with pytest.raises(ValueError, match="momentum"):
        GriffinLimVocoder(momentum=1.0)
