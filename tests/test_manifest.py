"""Manifests: CSV/JSONL parsing, resampling + mono mix-down, crop/pad, caption dropout, counted skips of bad files."""

import json
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from soundctm.data.manifest import ManifestDataset, SkipReport, read_manifest

SR = 16000


def tone(seconds, sr=SR, freq=440.0, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_csv(path, rows, header="file_name,caption"):
    lines = [header] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def audio_dir(tmp_path):
    d = tmp_path / "audio"
    d.mkdir()
    sf.write(d / "short.wav", tone(1.0), SR)
    sf.write(d / "long.wav", tone(3.0, freq=220.0), SR)
    stereo = np.stack([tone(2.5, 48000, amp=0.5), tone(2.5, 48000, amp=0.3)], axis=1)
    sf.write(d / "stereo48k.wav", stereo, 48000, subtype="FLOAT")
    sf.write(d / "silent.wav", np.zeros(SR, np.float32), SR)
    sf.write(d / "empty.wav", np.zeros(0, np.float32), SR)
    (d / "garbage.wav").write_bytes(b"this is not a riff file at all" * 10)
    return d


def test_csv_relative_paths_and_attribute_columns(tmp_path, audio_dir):
    path = write_csv(tmp_path / "m.csv", [("audio/short.wav", "a beep", "train")], header="file_name,caption,split")
    entries, n_empty = read_manifest(path)
    assert n_empty == 0 and entries[0].path == audio_dir / "short.wav"
    assert entries[0].caption == "a beep" and entries[0].attrs == {"split": "train"}


def test_jsonl_caption_string_or_list(tmp_path, audio_dir):
    records = [
        {"location": "audio/short.wav", "captions": "a beep"},
        {"location": str(audio_dir / "long.wav"), "captions": ["a low hum", "humming", " "], "id": 7},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    entries, n_empty = read_manifest(path)
    assert [e.caption for e in entries] == ["a beep", "a low hum", "humming"]
    assert n_empty == 1 and entries[1].attrs == {"id": 7} and entries[1].path == audio_dir / "long.wav"


@pytest.mark.parametrize(
    "name,text,match",
    [
        ("m.csv", "path,text\nx.wav,hi\n", "file_name,caption"),
        ("m.jsonl", '{"location": "x.wav", "captions": "ok"}\n{oops\n', "line 2"),
        ("m.jsonl", '{"location": "x.wav"}\n', "captions"),
        ("m.jsonl", '{"location": "x.wav", "captions": [1, 2]}\n', "captions must be"),
        ("m.txt", "x.wav hi\n", "path must end"),
    ],
)
def test_malformed_manifest_raises(tmp_path, name, text, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=match):
        read_manifest(tmp_path / name)


def test_stereo_48k_is_mixed_down_and_resampled(tmp_path, audio_dir):
    path = write_csv(tmp_path / "m.csv", [("audio/stereo48k.wav", "a tone")])
    ds = ManifestDataset(path, sample_rate=SR, clip_seconds=2.0)
    wave, caption = ds[0]
    assert wave.dtype == torch.float32 and wave.shape == (2 * SR,) and caption == "a tone"
    expected = tone(2.0, amp=0.4)  # mean of 0.5·sin and 0.3·sin at 16 kHz
    assert np.abs(wave.numpy()[200:-200] - expected[200:-200]).max() < 2e-3


def test_short_clip_zero_padded_long_clip_cropped(tmp_path, audio_dir):
    path = write_csv(tmp_path / "m.csv", [("audio/short.wav", "beep"), ("audio/long.wav", "hum")])
    ds = ManifestDataset(path, clip_seconds=2.0)
    short, _ = ds[0]
    assert torch.allclose(short[:SR], torch.from_numpy(tone(1.0)), atol=1e-4) and short[SR:].abs().max() == 0
    ds_center = ManifestDataset(path, clip_seconds=2.0, crop="center")
    long_center, _ = ds_center[1]
    assert torch.allclose(long_center, torch.from_numpy(tone(3.0, freq=220.0)[SR // 2 : SR // 2 + 2 * SR]),
                          atol=1e-4)


def test_random_crop_is_reproducible_and_in_range(tmp_path, audio_dir):
    path = write_csv(tmp_path / "m.csv", [("audio/long.wav", "hum")])
    full = tone(3.0, freq=220.0)
    ds = ManifestDataset(path, clip_seconds=1.0, crop="random", seed=3)
    a, b = ds[0][0].numpy(), ds[0][0].numpy()
    assert np.array_equal(a, b)
    offsets = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        clip = ds[0][0].numpy()
        matches = [o for o in range(0, 2 * SR + 1, 1) if np.abs(full[o : o + SR] - clip).max() < 1e-4]
        assert matches, "the crop is a window of the file"
        offsets.add(matches[0])
    assert len(offsets) > 1


def test_bad_files_are_skipped_and_counted(tmp_path, audio_dir):
    rows = [("audio/short.wav", "beep"), ("audio/garbage.wav", "x"), ("audio/empty.wav", "y"),
            ("audio/missing.wav", "z"), ("audio/silent.wav", "nothing"), ("audio/long.wav", "hum"),
            ("audio/long.wav", "")]
    path = write_csv(tmp_path / "m.csv", rows)
    with pytest.warns(UserWarning, match="4 skipped"):
        ds = ManifestDataset(path)
    assert ds.skipped == SkipReport(missing=1, unreadable=1, empty=1, empty_caption=1)
    assert [e.caption for e in ds.entries] == ["beep", "nothing", "hum"]
    with pytest.warns(UserWarning, match="silent.wav"):
        wave, caption = ds[1]  # the silent file is replaced by the next readable entry
    assert caption == "hum" and ds.skipped.silent == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ds[1][1] == "hum"  # known bad: skipped again without a new warning or count
    assert ds.skipped.total == 5
    assert [c for _, c, _ in ds.examples()] == ["beep", "hum"]


def test_file_corrupted_after_scan_is_skipped_at_load(tmp_path, audio_dir):
    path = write_csv(tmp_path / "m.csv", [("audio/short.wav", "beep"), ("audio/long.wav", "hum")])
    ds = ManifestDataset(path)
    (audio_dir / "short.wav").unlink()
    with pytest.warns(UserWarning, match="short.wav"):
        assert ds[0][1] == "hum"
    assert ds.skipped.unreadable == 1


def test_all_bad_raises_at_construction(tmp_path, audio_dir):
    path = write_csv(tmp_path / "m.csv", [("audio/garbage.wav", "x")])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no usable entries"):
        ManifestDataset(path)


def test_caption_dropout_rate_and_determinism(tmp_path, audio_dir):
    path = write_csv(tmp_path / "m.csv", [("audio/short.wav", f"beep {i}") for i in range(200)])
    never = ManifestDataset(path, caption_dropout=0.0)
    always = ManifestDataset(path, caption_dropout=1.0)
    assert never[5][1] == "beep 5" and always[5][1] == ""
    half = ManifestDataset(path, caption_dropout=0.5, seed=1)
    drops = [half[i][1] == "" for i in range(200)]
    assert 70 < sum(drops) < 130  # Binomial(200, 0.5): ±4.2 σ
    assert drops == [ManifestDataset(path, caption_dropout=0.5, seed=1)[i][1] == "" for i in range(200)]


def test_dataloader_batches(tmp_path, audio_dir):
    path = write_csv(tmp_path / "m.csv", [("audio/short.wav", "beep"), ("audio/stereo48k.wav", "tone")])
    waves, captions = next(iter(torch.utils.data.DataLoader(ManifestDataset(path), batch_size=2)))
    assert waves.shape == (2, 2 * SR) and list(captions) == ["beep", "tone"]


@pytest.mark.parametrize("kw,match", [({"clip_seconds": 0}, "clip_seconds"), ({"caption_dropout": 1.5},
                                       "caption_dropout"), ({"crop": "middle"}, "crop")])
def test_bad_arguments(tmp_path, audio_dir, kw, match):
    path = write_csv(tmp_path / "m.csv", [("audio/short.wav", "beep")])
    with pytest.raises(ValueError, match=match):
        ManifestDataset(path, **kw)
