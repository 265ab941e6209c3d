"""The audio-judge benchmark's scoring: per-attribute accuracy, the mean over attributes and the pooled share, and
its verdicts on clips whose attributes are known."""

import numpy as np
import pytest
from recipe_utils import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("audio_judge")


def test_mean_weights_attributes_and_pooled_weights_verdicts(bench):
    verdicts = {"family": [True] * 9 + [False], "pitch": [True, False], "count": [], "sweep": [False],
                "loudness": [True] * 4}
    row = bench.accuracy_row(verdicts)
    assert row["family"] == pytest.approx(0.9) and row["pitch"] == pytest.approx(0.5)
    assert row["count"] is None and row["sweep"] == 0.0 and row["loudness"] == 1.0
    assert row["mean"] == pytest.approx((0.9 + 0.5 + 0.0 + 1.0) / 4)  # count (unjudged) left out
    assert row["pooled"] == pytest.approx(14 / 17)
    assert bench.accuracy_row({a: [] for a in bench.ATTRS})["pooled"] is None


def test_judge_batch_accepts_real_clips_and_rejects_silence(bench):
    from soundctm.data.synthcaps import make_clip

    clips = [make_clip(0, "heldout", i) for i in range(6)]
    waves = np.stack([w for w, _, _ in clips])
    attrs = [a for _, _, a in clips]
    real = bench.accuracy_row(bench.judge_batch(waves, 16000, attrs))
    silent = bench.accuracy_row(bench.judge_batch(np.zeros_like(waves), 16000, attrs))
    assert real["pooled"] >= 0.9
    assert silent["pooled"] <= 0.5
