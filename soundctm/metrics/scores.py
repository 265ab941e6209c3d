"""Paired and distributional scores over embeddings and classifier outputs: CLAP score, KL, Inception Score.

KL conventions (AudioLDM, Liu et al. 2023, scores generated clips with a PANNs tagger against the paired reference
clip): ``kl_ref_to_gen`` = KL(p_ref ‖ p_gen) — what AudioLDM reports — and ``kl_gen_to_ref`` = KL(p_gen ‖ p_ref).
Kinds:
- ``softmax``: one categorical distribution per clip, KL = Σ_c p_c log(p_c / q_c);
- ``sigmoid``: independent per-class probabilities (multi-label taggers) plugged into the same sum Σ_c p_c log(p_c/q_c)
  without normalisation — the AudioLDM PANNs convention;
- ``bernoulli``: the proper multi-label KL, Σ_c KL(Bern(p_c) ‖ Bern(q_c)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit, log_softmax, softmax, xlogy

KL_KINDS = ("softmax", "sigmoid", "bernoulli")


@dataclass(frozen=True)
class KLResult:
    """Mean KL over clips in both directions, with the per-clip values ``[N]``."""

    kl_ref_to_gen: float
    kl_gen_to_ref: float
    kind: str
    per_clip_ref_to_gen: np.ndarray = field(repr=False)
    per_clip_gen_to_ref: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class InceptionScoreResult:
    """IS mean and standard deviation over splits, with the per-split scores."""

    mean: float
    std: float
    per_split: np.ndarray


def as_matrix(x, name: str) -> np.ndarray:
    """Validate a finite ``[N, C]`` array and return it as float64."""
    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must be a 2-D array [N, C] with N >= 1, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def paired_cosine(a, b) -> np.ndarray:
    """Cosine similarity of row pairs: ``a [N, D]``, ``b [N, D]`` → ``[N]``."""
    a, b = as_matrix(a, "a"), as_matrix(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired embeddings must have equal shapes, got {a.shape} and {b.shape}")
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.sum(a * b, axis=1)


def clap_score(text_embeddings, audio_embeddings) -> float:
    """CLAP score = mean over pairs of cos(text_i, audio_i) (Wu et al. 2023 embeddings; 1 = perfect agreement)."""
    return float(paired_cosine(text_embeddings, audio_embeddings).mean())


def clap_score_of_audio(embedder, texts: list[str], waveforms, sample_rate: int) -> float:
    """CLAP score of clips ``waveforms [N, T]`` against their captions, via ``embedder.embed``/``embed_text``."""
    if len(texts) != len(waveforms):
        raise ValueError(f"texts and waveforms must pair up, got {len(texts)} texts and {len(waveforms)} clips")
    return clap_score(embedder.embed_text(texts), embedder.embed(waveforms, sample_rate))


def to_probabilities(x: np.ndarray, kind: str, from_logits: bool, eps: float) -> np.ndarray:
    """Map logits (or already-probabilities) to per-class probabilities for ``kind``, clipped to [eps, 1 − eps]."""
    if from_logits:
        p = softmax(x, axis=1) if kind == "softmax" else expit(x)
    else:
        if x.min() < 0 or x.max() > 1:
            raise ValueError("probabilities must lie in [0, 1]; pass from_logits=True for logits")
        if kind == "softmax" and not np.allclose(x.sum(1), 1.0, atol=1e-4):
            raise ValueError("softmax probabilities must be rows summing to 1; pass from_logits=True for logits")
        p = x
    return np.clip(p, eps, 1.0 - eps) if kind == "bernoulli" else np.clip(p, eps, 1.0)


def kl_rows(p: np.ndarray, q: np.ndarray, kind: str) -> np.ndarray:
    """Per-row KL(p ‖ q) ``[N]`` for probability rows ``[N, C]`` under ``kind``."""
    kl = np.sum(xlogy(p, p) - xlogy(p, q), axis=1)
    if kind == "bernoulli":
        kl = kl + np.sum(xlogy(1 - p, 1 - p) - xlogy(1 - p, 1 - q), axis=1)
    return kl


def kl_divergence(p_ref, p_gen, kind: str = "sigmoid", from_logits: bool = False, eps: float = 1e-6) -> KLResult:
    """KL between classifier outputs of paired clips ``p_ref [N, C]``, ``p_gen [N, C]``, in both directions."""
    if kind not in KL_KINDS:
        raise ValueError(f"kind must be one of {KL_KINDS}, got {kind!r}")
    p_ref, p_gen = as_matrix(p_ref, "p_ref"), as_matrix(p_gen, "p_gen")
    if p_ref.shape != p_gen.shape:
        raise ValueError(f"p_ref and p_gen must have equal shapes, got {p_ref.shape} and {p_gen.shape}")
    p = to_probabilities(p_ref, kind, from_logits, eps)
    q = to_probabilities(p_gen, kind, from_logits, eps)
    ref_to_gen, gen_to_ref = kl_rows(p, q, kind), kl_rows(q, p, kind)
    return KLResult(float(ref_to_gen.mean()), float(gen_to_ref.mean()), kind, ref_to_gen, gen_to_ref)


def inception_score_of_split(log_p: np.ndarray) -> float:
    """IS = exp(E_x KL(p(y|x) ‖ p(y))) with p(y) the mean of the rows of ``exp(log_p) [N, C]``."""
    log_marginal = np.log(np.maximum(np.exp(log_p).mean(0), 1e-300))
    kl = np.sum(np.exp(log_p) * (log_p - log_marginal), axis=1)
    return float(np.exp(kl.mean()))


def inception_score(predictions, splits: int = 10, from_logits: bool = False) -> InceptionScoreResult:
    """Inception Score (Salimans et al. 2016) of class predictions ``[N, C]``, mean ± std over ``splits`` chunks."""
    x = as_matrix(predictions, "predictions")
    if not 1 <= splits <= len(x):
        raise ValueError(f"splits must be in [1, {len(x)}] (number of clips), got {splits}")
    if from_logits:
        log_p = log_softmax(x, axis=1)
    else:
        if x.min() < 0 or not np.allclose(x.sum(1), 1.0, atol=1e-4):
            raise ValueError("predictions must be probability rows summing to 1; pass from_logits=True for logits")
        log_p = np.log(np.maximum(x, 1e-300))
    scores = np.array([inception_score_of_split(chunk) for chunk in np.array_split(log_p, splits)])
    return InceptionScoreResult(mean=float(scores.mean()), std=float(scores.std()), per_split=scores)
