import numpy as np
import pytest
import torch

from soundctm.metrics.scores import clap_score, clap_score_of_audio, inception_score, kl_divergence, paired_cosine


def test_paired_cosine_and_clap_score_closed_forms():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    b = np.array([[5.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])
    np.testing.assert_allclose(paired_cosine(a, b), [1.0, 0.0, -1.0], atol=1e-12)
    assert clap_score(a, b) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8))
    assert clap_score(x, 3.0 * x) == pytest.approx(1.0)
    assert clap_score(torch.tensor(x), torch.tensor(-x)) == pytest.approx(-1.0)


def test_clap_score_of_audio_uses_both_towers():
    class FakeClap:
        def embed_text(self, texts):
            return np.array([[1.0, 0.0]] * len(texts))

        def embed(self, waveforms, sample_rate):
            return np.array([[np.cos(0.5), np.sin(0.5)]] * len(waveforms))

    score = clap_score_of_audio(FakeClap(), ["a", "b"], np.zeros((2, 100)), 16000)
    assert score == pytest.approx(np.cos(0.5))
    with pytest.raises(ValueError, match="pair up"):
        clap_score_of_audio(FakeClap(), ["a"], np.zeros((2, 100)), 16000)


def test_softmax_kl_matches_closed_form_in_both_directions():
    p = np.array([[0.5, 0.5], [0.9, 0.1]])
    q = np.array([[0.25, 0.75], [0.5, 0.5]])
    kl_pq = np.sum(p * np.log(p / q), axis=1)
    kl_qp = np.sum(q * np.log(q / p), axis=1)
    r = kl_divergence(p, q, kind="softmax")
    np.testing.assert_allclose(r.per_clip_ref_to_gen, kl_pq, rtol=1e-9)
    np.testing.assert_allclose(r.per_clip_gen_to_ref, kl_qp, rtol=1e-9)
    assert r.kl_ref_to_gen == pytest.approx(kl_pq.mean()) and r.kl_gen_to_ref == pytest.approx(kl_qp.mean())
    assert r.kl_ref_to_gen != pytest.approx(r.kl_gen_to_ref)  # KL is not symmetric: names matter


def test_softmax_kl_from_logits_equals_kl_of_softmax_probabilities():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    pa = np.exp(a) / np.exp(a).sum(1, keepdims=True)
    pb = np.exp(b) / np.exp(b).sum(1, keepdims=True)
    r_logits = kl_divergence(a, b, kind="softmax", from_logits=True)
    r_probs = kl_divergence(pa, pb, kind="softmax")
    assert r_logits.kl_ref_to_gen == pytest.approx(r_probs.kl_ref_to_gen, rel=1e-9)
    # Shifting logits by a per-row constant leaves the softmax (and the KL) unchanged.
    r_shift = kl_divergence(a + 3.0, b - 2.0, kind="softmax", from_logits=True)
    assert r_shift.kl_gen_to_ref == pytest.approx(r_logits.kl_gen_to_ref, rel=1e-9)


def test_sigmoid_and_bernoulli_kl_closed_forms():
    p = np.array([[0.8, 0.1, 0.5]])
    q = np.array([[0.4, 0.2, 0.5]])
    sig = np.sum(p * np.log(p / q))
    bern = sig + np.sum((1 - p) * np.log((1 - p) / (1 - q)))
    assert kl_divergence(p, q, kind="sigmoid").kl_ref_to_gen == pytest.approx(sig, rel=1e-6)
    assert kl_divergence(p, q, kind="bernoulli").kl_ref_to_gen == pytest.approx(bern, rel=1e-6)
    logit = lambda v: np.log(v / (1 - v))  # noqa: E731
    r = kl_divergence(logit(p), logit(q), kind="bernoulli", from_logits=True)
    assert r.kl_ref_to_gen == pytest.approx(bern, rel=1e-6)


def test_kl_of_identical_distributions_is_zero_and_bernoulli_nonnegative():
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 1, (6, 10))
    for kind in ("sigmoid", "bernoulli"):
        r = kl_divergence(p, p, kind=kind)
        assert r.kl_ref_to_gen == pytest.approx(0.0, abs=1e-12) and r.kl_gen_to_ref == pytest.approx(0.0, abs=1e-12)
    q = rng.uniform(0, 1, (6, 10))
    r = kl_divergence(p, q, kind="bernoulli")
    assert np.all(r.per_clip_ref_to_gen > 0) and np.all(r.per_clip_gen_to_ref > 0)


def test_kl_bad_inputs():
    with pytest.raises(ValueError, match="kind must be one of"):
        kl_divergence(np.ones((1, 2)) / 2, np.ones((1, 2)) / 2, kind="tanh")
    with pytest.raises(ValueError, match="equal shapes"):
        kl_divergence(np.ones((1, 2)) / 2, np.ones((2, 2)) / 2)
    with pytest.raises(ValueError, match="from_logits=True"):
        kl_divergence(np.array([[2.0, -1.0]]), np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="summing to 1"):
        kl_divergence(np.array([[0.2, 0.2]]), np.array([[0.5, 0.5]]), kind="softmax")


def test_inception_score_of_uniform_predictions_is_one():
    r = inception_score(np.full((20, 5), 0.2), splits=4)
    assert r.mean == pytest.approx(1.0) and r.std == pytest.approx(0.0, abs=1e-12)
    assert inception_score(np.zeros((20, 5)), splits=2, from_logits=True).mean == pytest.approx(1.0)


def test_inception_score_of_confident_balanced_predictions_is_number_of_classes():
    one_hot = np.eye(7)[np.arange(70) % 7]
    r = inception_score(one_hot, splits=10)
    assert r.mean == pytest.approx(7.0) and len(r.per_split) == 10
    # Identical one-hot predictions (no diversity) give IS = 1.
    assert inception_score(np.eye(7)[np.zeros(10, int)], splits=1).mean == pytest.approx(1.0)


def test_inception_score_of_two_groups_closed_form():
    # Half the clips predict [1, 0, 0], half [0, 0.5, 0.5]: p(y) = [.5, .25, .25], E KL = log 2, IS = 2.
    preds = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]] * 5)
    assert inception_score(preds, splits=1).mean == pytest.approx(2.0)
    with pytest.raises(ValueError, match="splits"):
        inception_score(preds, splits=11)
