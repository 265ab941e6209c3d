import numpy as np
import pytest
import soundfile as sf

from soundctm.audio.io import (
    AudioLoadError,
    crop_or_pad,
    is_silent,
    load_audio,
    peak_normalize,
    resample,
    rms_db,
    save_audio,
    to_mono,
)


def _tone(freq, sr, seconds, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _dominant_freq(wave, sr):
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.argmax(spec) * sr / len(wave)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioLoadError, match="nope.wav"):
        load_audio(path)


def test_corrupt_file_raises_audio_load_error(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF\x00\x00garbage, not audio at all" * 4)
    with pytest.raises(AudioLoadError, match="broken.wav"):
        load_audio(path)
    assert issubclass(AudioLoadError, ValueError)


def test_zero_length_file_raises(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioLoadError, match="empty"):
        load_audio(path)


def test_stereo_48k_becomes_mono_16k_with_right_length(tmp_path):
    sr, seconds = 48000, 1.5
    left, right = _tone(440, sr, seconds, 0.4), _tone(440, sr, seconds, 0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), sr, subtype="FLOAT")
    wave = load_audio(path, sample_rate=16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert wave.shape[0] == int(16000 * seconds)
    # mix-down averages channels: amplitude (0.4 + 0.2) / 2 = 0.3
    assert abs(np.abs(wave[1000:-1000]).max() - 0.3) < 0.01
    assert abs(_dominant_freq(wave, 16000) - 440) < 2


def test_stereo_kept_when_mono_false(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(path, np.zeros((800, 2), dtype=np.float32), 16000)
    assert load_audio(path, mono=False).shape == (800, 2)


def test_silent_clip_is_detected_and_survives_normalisation():
    silent = np.zeros(16000, dtype=np.float32)
    assert is_silent(silent)
    assert np.array_equal(peak_normalize(silent), silent)
    assert not is_silent(_tone(440, 16000, 0.5, amp=0.1))
    assert is_silent(_tone(440, 16000, 0.5, amp=1e-4))  # -63 dB RMS


def test_rms_db_of_full_scale_sine_is_minus_3db():
    assert abs(rms_db(_tone(1000, 16000, 1.0, amp=1.0)) - 20 * np.log10(1 / np.sqrt(2))) < 0.01


def test_peak_normalize_hits_peak():
    out = peak_normalize(_tone(300, 16000, 0.2, amp=0.1), peak=0.8)
    assert abs(np.abs(out).max() - 0.8) < 1e-6
    with pytest.raises(ValueError, match="peak"):
        peak_normalize(out, peak=1.5)


def test_resample_preserves_frequency_and_duration():
    wave = _tone(1000, 44100, 1.0)
    out = resample(wave, 44100, 16000)
    assert out.shape == (16000,)
    assert abs(_dominant_freq(out, 16000) - 1000) < 2
    with pytest.raises(ValueError, match="sr_out"):
        resample(wave, 44100, 0)


def test_to_mono_averages_channels():
    stereo = np.array([[1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    assert np.allclose(to_mono(stereo), [0.5, 0.5])


def test_crop_or_pad():
    wave = np.arange(10, dtype=np.float32)
    assert np.array_equal(crop_or_pad(wave, 4, offset=3), [3, 4, 5, 6])
    padded = crop_or_pad(wave, 6, offset=7)
    assert np.array_equal(padded, [7, 8, 9, 0, 0, 0])
    with pytest.raises(ValueError, match="length"):
        crop_or_pad(wave, -1)


def test_save_audio_clips_and_round_trips(tmp_path):
    wave = np.array([0.0, 0.5, 2.0, -3.0, -0.25], dtype=np.float32)
    path = save_audio(tmp_path / "out.wav", wave, 16000)
    info = sf.info(path)
    assert info.subtype == "PCM_16" and info.samplerate == 16000
    back = load_audio(path, sample_rate=16000)
    assert np.allclose(back, np.clip(wave, -1, 1), atol=1 / 32767 + 1e-6)


def test_save_audio_unwritable_path_is_clear(tmp_path):
    with pytest.raises(OSError, match="cannot write audio"):
        save_audio(tmp_path / "missing_dir" / "out.wav", np.zeros(10), 16000)
