import math

import numpy as np
import pytest
import torch

from soundctm.data.synthcaps import VOCABULARY, SynthCaps
from soundctm.metrics.embedders import EMBEDDERS, build_embedder
from soundctm.metrics.synthcaps_classifier import (
    CORE_ATTRIBUTES,
    DEFAULT_DIR,
    HEADS,
    ClassifierTraining,
    SynthCapsClassifier,
    SynthCapsClassifierConfig,
    SynthCapsEmbedder,
    augment_log_mels,
    blur_log_mel,
    build_synthcaps_embedder,
    decode_logits,
    encode_attributes,
    gaussian_kernel,
    labels_of,
    log_mels_of_waves,
    per_attribute_accuracy,
    synthcaps_waves,
    train_synthcaps_classifier,
)

SMALL = SynthCapsClassifierConfig(channels=(4, 8), embedding_dim=16)
FLOOR = math.log(1e-5)


@pytest.fixture(scope="module")
def bundled():
    return build_embedder("synthcaps")


def test_bundled_classifier_reads_fresh_heldout_clips(bundled):
    """≥ 95 % per core attribute on 150 held-out clips of a seed used neither in training nor in the report."""
    waves, attrs = synthcaps_waves(150, seed=4242, split="heldout")
    pred = bundled.predict_attributes(waves, 16000)
    for head, (correct, total) in per_attribute_accuracy(pred, attrs, CORE_ATTRIBUTES).items():
        assert correct / total >= 0.95, f"{head}: {correct}/{total}"


def test_bundled_weights_are_small_and_have_provenance():
    assert (DEFAULT_DIR / "model.safetensors").stat().st_size < 2_000_000
    assert (DEFAULT_DIR / "provenance.json").is_file()


def test_embedder_interface_shapes_and_registry(bundled):
    assert "synthcaps" in EMBEDDERS and isinstance(bundled, SynthCapsEmbedder)
    waves = np.stack([SynthCaps(2, seed=9, split="heldout", sr=22050)[i][0] for i in range(2)])
    emb = bundled.embed(waves, 22050)  # resampled to 16 kHz inside
    assert emb.shape == (2, bundled.dim) and emb.dtype == np.float32
    assert bundled.classify(waves, 22050).shape == (2, len(VOCABULARY["source"]))
    out = bundled.embed_and_predict(waves, 22050)
    np.testing.assert_allclose(out.embeddings, emb, rtol=1e-5, atol=1e-6)
    assert {h: v.shape for h, v in out.logits.items()} == {h: (2, len(VOCABULARY[h])) for h in HEADS}
    for attrs in out.attributes():
        assert all(attrs[h] in VOCABULARY[h] for h in HEADS)
    with pytest.raises(ValueError, match="waveforms"):
        bundled.embed(np.zeros((0, 100), np.float32), 16000)


def test_embedding_is_sensitive_to_level():
    """Loudness is an attribute: the input is not normalised per clip, so a 20 dB gain moves the embedding."""
    emb = build_synthcaps_embedder()
    wave = SynthCaps(1, seed=1, split="heldout")[0][0]
    a, b = emb.embed(np.stack([wave, 10 * wave]), 16000)
    assert np.linalg.norm(a - b) > 1e-3


def test_labels_round_trip_through_one_hot_logits():
    attrs = [SynthCaps(5, seed=3).prompt(i)[1] for i in range(5)]
    labels = labels_of(attrs).numpy()
    logits = {h: np.eye(len(VOCABULARY[h]))[labels[:, i]] for i, h in enumerate(HEADS)}
    decoded = decode_logits(logits)
    assert [{h: a[h] for h in HEADS} for a in attrs] == decoded
    assert encode_attributes({**attrs[0], "pitch": None})[HEADS.index("pitch")] == VOCABULARY["pitch"].index(None)


def test_per_attribute_accuracy_counts():
    truth = [{"pitch": "low", "reverb": False}, {"pitch": None, "reverb": True}, {"pitch": "high", "reverb": True}]
    pred = [{"pitch": "low", "reverb": False}, {"pitch": "low", "reverb": True}, {"pitch": "high", "reverb": False}]
    assert per_attribute_accuracy(pred, truth, ("pitch", "reverb")) == {"pitch": (2, 3), "reverb": (2, 3)}
    assert per_attribute_accuracy(pred, truth, ("pitch", "reverb"), present_only=True) == {
        "pitch": (2, 2), "reverb": (1, 2)}


def test_save_and_load_round_trip(tmp_path):
    net = SynthCapsClassifier(SMALL).eval()
    net.save_pretrained(tmp_path)
    loaded = SynthCapsClassifier.from_pretrained(tmp_path)
    assert loaded.config == SMALL
    wave = torch.randn(2, 16000) * 0.1
    torch.testing.assert_close(loaded(wave).embedding, net(wave).embedding)
    with pytest.raises(ValueError, match="not a model directory"):
        SynthCapsClassifier.from_pretrained(tmp_path / "missing")


def test_config_rejects_unknown_heads():
    with pytest.raises(ValueError, match="heads"):
        SynthCapsClassifierConfig(heads=("source", "colour"))


def test_gaussian_kernel_and_blur_keep_energy_of_a_constant():
    k = gaussian_kernel(1.2, 4)
    assert k.sum().item() == pytest.approx(1.0) and torch.equal(k, k.flip(0))
    const = torch.full((1, 16, 20), -2.0)
    torch.testing.assert_close(blur_log_mel(const, 1.0, 2.0, FLOOR), const)
    impulse = torch.full((1, 16, 20), FLOOR)
    impulse[0, 8, 10] = 0.0
    blurred = blur_log_mel(impulse, 1.0, 2.0, -100.0)
    assert torch.exp(2 * blurred).sum().item() == pytest.approx(torch.exp(2 * impulse).sum().item(), rel=1e-4)


def test_augmentation_without_blur_or_noise_is_a_clamped_gain():
    t = ClassifierTraining(gain_db=3.0, blur_probability=0.0, noise_probability=0.0)
    x = torch.randn(8, 16, 20) - 3
    out = augment_log_mels(x.clone(), t, FLOOR, torch.Generator().manual_seed(0))
    shift = (out - x)[x > FLOOR + 1]
    assert shift.abs().max().item() <= 3.0 * math.log(10) / 20 + 1e-6
    per_clip = out - x
    for i in range(8):  # one gain per clip
        assert torch.allclose(per_clip[i][x[i] > FLOOR + 1], per_clip[i][x[i] > FLOOR + 1][0], atol=1e-5)


def test_short_training_learns_loudness():
    """A few steps on 64 clips separate quiet from loud (the easiest head) on those clips."""
    cfg = SynthCapsClassifierConfig(channels=(4, 8), embedding_dim=16, heads=("loudness",))
    waves, attrs = synthcaps_waves(64, seed=0, split="train")
    x = log_mels_of_waves(waves, SynthCapsClassifier(cfg).mel)
    y = labels_of(attrs, cfg.heads)
    training = ClassifierTraining(steps=60, batch=32, lr=1e-2, blur_probability=0.0, noise_probability=0.0)
    net = train_synthcaps_classifier((x, y), None, cfg, training)
    pred = net.forward_mel(x.float()).logits["loudness"].argmax(1)
    assert (pred == y[:, 0]).float().mean().item() >= 0.9
