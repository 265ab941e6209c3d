import collections

import numpy as np
import pytest
import soundfile as sf

from soundctm.data import synthcaps as sc
from soundctm.data.synthcaps_captions import (
    COUNT_ADVERBS,
    COUNT_NUMBERS,
    EVENT_PLURALS,
    LOUDNESS_WORDS,
    NOUNS,
    PITCH_WORDS,
    SWEEP_PHRASES,
)
from soundctm.data.synthcaps_sounds import level_db
from soundctm.metrics.synthcaps_judge import (
    LOUDNESS_THRESHOLD_DB,
    PITCH_BOUNDS_HZ,
    SOURCE_FAMILY,
    judge,
    judge_measurement,
    measure,
    prompted_attributes,
)

SR = 16000


@pytest.fixture(scope="module")
def clips():
    """A few hundred clips: ordinary training clips plus held-out combinations."""
    train = sc.SynthCaps(180, seed=11, split="train")
    combos = sc.SynthCaps(60, seed=11, split="heldout_combo")
    return [train[i] for i in range(len(train))] + [combos[i] for i in range(len(combos))]


def test_measurements_recover_generated_attributes(clips):
    total, correct = collections.Counter(), collections.Counter()
    for wave, _, attrs in clips:
        m = measure(wave, SR)
        for name, ok in judge_measurement(m, attrs).items():
            total[name] += 1
            correct[name] += ok
        # the measured numbers agree with the ground truth too
        assert abs(m.level_db - attrs["level_db"]) < 1.0  # second sources / background are >= 20 dB lower
        assert np.abs(wave).max() <= 1.0
        if attrs["pitch"] and not attrs["second_source"]:
            assert abs(np.log2(m.f0_hz / attrs["f0_hz"])) < 0.05
        if attrs["count"]:
            assert np.allclose(m.onsets_s, attrs["onsets_s"], atol=0.06)
    assert set(total) == {"family", "pitch", "count", "sweep", "loudness", "fade"}
    for name in total:
        assert total[name] >= 10, name
        assert correct[name] / total[name] >= 0.98, (name, correct[name], total[name])


@pytest.mark.parametrize("attrs, expected", [
    # a single source: its family is judged, with every judged attribute the caption states; fade is never judged
    ({"source": "knock", "count": 2, "loudness": "quiet"}, ("count", "family", "loudness")),
    ({"source": "buzzer", "pitch": "low", "count": 3, "loudness": "quiet"}, ("count", "family", "loudness", "pitch")),
    ({"source": "rain", "loudness": "quiet", "fade": "out"}, ("family", "loudness")),
    ({"source": "siren", "sweep": "rising", "loudness": "loud", "reverb": True}, ("family", "loudness", "sweep")),
    # a second source changes tonality and continuity: no family verdict
    ({"source": "beep", "pitch": "high", "count": 2, "loudness": "loud", "second_source": "rain"},
     ("count", "loudness", "pitch")),
    ({"source": "siren", "sweep": "rising", "loudness": "loud", "second_source": "rumble", "fade": "in"},
     ("loudness", "sweep")),
    # attributes set to None are not stated
    ({"source": "hiss", "pitch": None, "count": None, "sweep": None, "loudness": "loud"}, ("family", "loudness")),
])
def test_prompted_attributes_are_the_judged_attributes_a_caption_states(attrs, expected):
    """Written out per case (SynthCaps captions state family, pitch, count, sweep, loudness and fade; the judge
    scores all but fade, and family only without a second source)."""
    assert prompted_attributes(attrs) == expected


def test_prompted_attributes_agree_with_the_caption_words(clips):
    """Read from the caption text, not the code: a caption naming a count word prompts count, one naming a pitch
    direction prompts sweep, one naming how loud prompts loudness."""
    words = {"count": ("twice", "thrice", "two", "three", "four", "five", "once", "single", "one "),
             "sweep": ("rising", "falling", "going up", "going down", "upward", "downward", "ascending",
                       "descending", "sweep", "glid", "climb", "drop")}
    seen = collections.Counter()
    for _, caption, attrs in clips:
        keys = prompted_attributes(attrs)
        text = caption.lower()
        for name, cues in words.items():
            if name in keys:
                assert any(c in text for c in cues), (name, caption)
                seen[name] += 1
        assert "loudness" in keys and attrs["loudness"] in ("quiet", "loud")
    assert seen["count"] >= 20 and seen["sweep"] >= 5, seen


def test_judge_flags_wrong_attributes(clips):
    flipped = {
        "low": "high",
        "medium": "low",
        "high": "medium",
        "quiet": "loud",
        "loud": "quiet",
        "rising": "falling",
        "falling": "rising",
        "in": "out",
        "out": "in",
    }
    for wave, _, attrs in clips[:40]:
        wrong = {k: flipped.get(v, v) for k, v in attrs.items() if isinstance(v, str)}
        wrong["count"] = attrs["count"] % 3 + 1 if attrs["count"] else None
        verdict = judge(wave, SR, {**attrs, **wrong})
        assert not any(verdict[k] for k in ("pitch", "count", "sweep", "loudness", "fade") if k in verdict)


def test_measure_closed_forms():
    t = np.arange(2 * SR) / SR
    sine = 0.5 * np.sin(2 * np.pi * 440 * t)
    m = measure(sine, SR)
    assert abs(m.level_db - 20 * np.log10(0.5 / np.sqrt(2))) < 0.05
    assert abs(m.f0_hz - 440) < 5 and m.pitch_class == "medium" and m.family == "tonal"
    assert m.n_events == 0 and m.sweep is None and m.fade is None

    noise = np.random.default_rng(0).standard_normal(2 * SR) * 0.1
    m = measure(noise, SR)
    assert m.family == "noise" and np.isnan(m.f0_hz) and m.pitch_class is None and m.tonality < 0.1

    chirp = np.sin(2 * np.pi * np.cumsum(500 * 3 ** (t / 2)) / SR)  # 500 -> 1500 Hz in 2 s
    m = measure(chirp, SR)
    assert m.sweep == "rising" and abs(m.sweep_oct_per_s - np.log2(3) / 2) < 0.08
    assert measure(chirp[::-1].copy(), SR).sweep == "falling"

    assert measure(sine * t / 2, SR).fade == "in" and measure(sine * (1 - t / 2), SR).fade == "out"


def test_onset_counting_on_known_bursts():
    t = np.arange(2 * SR) / SR
    wave = np.zeros_like(t)
    onsets = (0.2, 0.75, 1.4)
    for onset in onsets:
        burst = (t >= onset) & (t < onset + 0.1)
        wave[burst] = 0.3 * np.sin(2 * np.pi * 1000 * t[burst])
    m = measure(wave, SR)
    assert m.n_events == 3 and np.allclose(m.onsets_s, onsets, atol=0.05)
    assert m.pitch_class == "high"
    assert measure(wave + 0.003 * np.random.default_rng(1).standard_normal(len(t)), SR).n_events == 3


def test_pitch_and_loudness_classes_are_separated():
    ranges = sc.PITCH_RANGES_HZ
    assert ranges["low"][1] < PITCH_BOUNDS_HZ[0] < ranges["medium"][0]
    assert ranges["medium"][1] < PITCH_BOUNDS_HZ[1] < ranges["high"][0]
    quiet, loud = sc.LOUDNESS_RANGES_DB["quiet"], sc.LOUDNESS_RANGES_DB["loud"]
    assert loud[0] - quiet[1] >= 12
    assert quiet[1] < LOUDNESS_THRESHOLD_DB < loud[0]
    assert set(SOURCE_FAMILY) == set(sc.SOURCES)


def test_same_seed_same_clip_different_seed_differs():
    a, b = sc.SynthCaps(4, seed=5), sc.SynthCaps(4, seed=5)
    for i in (3, 0, 2):  # access order does not matter
        wa, ca, aa = a[i]
        wb, cb, ab = b[i]
        assert wa.tobytes() == wb.tobytes() and ca == cb and aa == ab
    other = sc.SynthCaps(4, seed=6)
    assert all(a[i][0].tobytes() != other[i][0].tobytes() for i in range(4))
    assert a[0][0].dtype == np.float32 and a[0][0].shape == (2 * SR,)
    assert a[-1][1] == a[3][1]
    with pytest.raises(IndexError):
        a[4]


def test_heldout_combos_never_in_train_or_heldout():
    rng = np.random.default_rng(0)
    for split in ("train", "heldout"):
        for _ in range(2000):
            attrs = sc.sample_attributes(rng, split)
            assert not sc.is_heldout_combo(attrs) and sc.split_of(attrs) == "train"
    combos = [sc.sample_attributes(rng, "heldout_combo") for _ in range(500)]
    assert all(sc.split_of(a) == "heldout_combo" for a in combos)
    seen = {i for a in combos for i, p in enumerate(sc.HELDOUT_COMBOS) if all(a[k] == v for k, v in p.items())}
    assert seen == set(range(len(sc.HELDOUT_COMBOS)))


def test_train_still_covers_every_attribute_value():
    rng = np.random.default_rng(1)
    train = [sc.sample_attributes(rng, "train") for _ in range(3000)]
    for key, values in sc.VOCABULARY.items():
        assert {a[key] for a in train} == set(values), key


def test_heldout_split_differs_from_train_by_seed_only():
    train = sc.SynthCaps(50, seed=0, split="train")
    heldout = sc.heldout_prompts(50, seed=0)
    assert [c for c, _ in heldout] != train.captions()
    assert all(not sc.is_heldout_combo(a) for _, a in heldout)
    assert all(sc.is_heldout_combo(a) for _, a in sc.heldout_prompts(20, seed=0, split="heldout_combo"))
    assert len(sc.example_prompts(5)) == 5


def test_captions_name_every_attribute():
    def mentions(caption, phrases):
        return any(p in caption.lower() for p in phrases)

    for caption, attrs in sc.heldout_prompts(300, seed=2):
        assert "None" not in caption and caption[0].isupper()
        assert mentions(caption, NOUNS[attrs["source"]] + EVENT_PLURALS.get(attrs["source"], ()))
        assert mentions(caption, LOUDNESS_WORDS[attrs["loudness"]])
        if attrs["pitch"]:
            assert mentions(caption, PITCH_WORDS[attrs["pitch"]])
        if attrs["count"]:
            assert mentions(caption, COUNT_ADVERBS[attrs["count"]] + COUNT_NUMBERS.get(attrs["count"], ("single",)))
        if attrs["sweep"]:
            assert mentions(caption, SWEEP_PHRASES[attrs["sweep"]])
        if attrs["second_source"]:
            assert mentions(caption, NOUNS[attrs["second_source"]])
    captions = sc.SynthCaps(200, seed=3).captions()
    assert len(set(captions)) >= 150


def test_level_scaling_hits_the_target():
    rng = np.random.default_rng(0)
    attrs = sc.sample_attributes(rng, "train")
    attrs.update(second_source=None, background=False)
    wave = sc.synthesize(attrs, rng)
    assert abs(level_db(wave, SR) - attrs["level_db"]) < 0.01


def test_cli_writes_readable_manifest(tmp_path, capsys):
    assert sc.main(["--out", str(tmp_path), "--n", "4", "--seed", "1"]) == 0
    rows = sc.read_manifest(tmp_path / "train.csv")
    header = (tmp_path / "train.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["file_name", "caption"]
    data = sc.SynthCaps(4, seed=1)
    for i, row in enumerate(rows):
        wave, caption, attrs = data[i]
        audio, sr = sf.read(row["file_name"], dtype="float32")
        assert sr == SR and np.abs(audio - wave).max() <= 1 / 32768 + 1e-6
        assert row["caption"] == caption and row["attrs"] == attrs and row["index"] == i
    again = tmp_path / "again"
    assert sc.main(["--out", str(again), "--n", "4", "--seed", "1", "--workers", "2"]) == 0
    assert (again / "train.csv").read_bytes() == (tmp_path / "train.csv").read_bytes()
    assert (again / "train/000002.wav").read_bytes() == (tmp_path / "train/000002.wav").read_bytes()


def test_cli_split_all_writes_three_manifests(tmp_path):
    assert sc.main(["--out", str(tmp_path), "--n", "3", "--split", "all"]) == 0
    for split in sc.SPLITS:
        rows = sc.read_manifest(tmp_path / f"{split}.csv")
        assert rows and all(r["split"] == split for r in rows)
        assert all(sc.split_of(r["attrs"]) == ("heldout_combo" if split == "heldout_combo" else "train") for r in rows)


@pytest.mark.parametrize(
    "argv, word",
    [
        (["--n", "0"], "--n"),
        (["--n", "2", "--workers", "0"], "--workers"),
        (["--n", "2", "--split", "test"], "--split"),
        (["--n", "2", "--duration", "0.5"], "--duration"),
    ],
)
def test_cli_bad_input_exit_2_one_line(tmp_path, capsys, argv, word):
    assert sc.main(["--out", str(tmp_path)] + argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and word in err


def test_cli_unwritable_out_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert sc.main(["--out", str(blocker / "sub"), "--n", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--out" in err


def test_bad_arguments_raise_value_error():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="split"):
        sc.sample_attributes(rng, "test")
    with pytest.raises(ValueError, match="duration_s"):
        sc.sample_attributes(rng, "train", duration_s=0.2)
    with pytest.raises(ValueError, match="n"):
        sc.SynthCaps(0)
    with pytest.raises(ValueError, match="sr"):
        sc.SynthCaps(2, sr=1000)
    with pytest.raises(ValueError, match="wave"):
        measure(np.zeros(0), SR)
