"""Scores of generated audio against SynthCaps prompts: FD_synth, attribute and judge accuracy, preview fidelity.

- ``fd_synth``: Fréchet distance between the SynthCaps classifier embeddings of generated clips and of real clips
  of the same prompts (the SynthCaps clip each held-out prompt describes), ``soundctm.metrics.frechet``;
- ``attr``: how often the classifier reads back each attribute the prompt implies (``applicable_attributes``);
- ``judge``: how often the signal measurements (``soundctm.metrics.synthcaps_judge.judge``) agree with the prompt;
- ``kl`` / ``is``: paired KL between the classifier's ``source`` posteriors of the real and generated clip, and the
  Inception Score of the generated clips' ``source`` posteriors (``soundctm.metrics.scores``);
- ``preview_fidelity``: how much of a 1-step result's content the N-step result from the same noise keeps
  (SoundCTM, Saito et al. 2024: with γ = 0 the N-step sample stays on the 1-step preview's trajectory).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from soundctm.data.synthcaps import CONTINUOUS, COUNTED, PITCHED, SWEPT
from soundctm.metrics.frechet import frechet_distance_of_embeddings
from soundctm.metrics.synthcaps_classifier import CORE_ATTRIBUTES, SynthCapsOutputs
from soundctm.metrics.synthcaps_judge import JUDGED_ATTRIBUTES

PROMPT_SETS = {"synthcaps-heldout": "heldout", "synthcaps-heldout-combo": "heldout_combo"}
METRICS = ("fd_synth", "attr", "judge", "kl", "is", "clap")
ATTRIBUTE_METRICS = ("attr", "judge", "kl")  # need prompts with ground-truth attributes / paired reference clips
JUDGE_KEYS = JUDGED_ATTRIBUTES  # the headline mean: what the judge tables score (fade is reported, not averaged)
# Heads the classifier reads at >= 95 % on held-out clips, also after mel -> VAE -> Griffin-Lim
# (benchmarks/results/synthcaps_classifier.md); second_source, background and reverb are predicted but not scored.
SCORED_ATTRIBUTES = (*CORE_ATTRIBUTES, "fade")


# ---- prompt sets ----

@dataclass
class PromptSet:
    """Captions, their SynthCaps attributes (None for free text) and a loader of the real reference clips ``[N, T]``."""

    name: str
    captions: list[str]
    attrs: list[dict] | None
    reference: Callable[[], tuple[np.ndarray, int]]
    paired: bool  # reference clip i is the real clip of caption i
    split: str = "heldout"  # SynthCaps split the reference (or, for the FD floor, other real clips) come from

    def __len__(self) -> int:
        return len(self.captions)


def synthcaps_reference(n: int, seed: int, split: str) -> Callable[[], tuple[np.ndarray, int]]:
    """Loader of the first n SynthCaps clips of (seed, split) at 16 kHz."""

    def load():
        from soundctm.metrics.synthcaps_classifier import synthcaps_waves

        return synthcaps_waves(n, seed, split)[0], 16000

    return load


def synthcaps_prompt_set(name: str, n: int, seed: int) -> PromptSet:
    """The first n prompts of a held-out SynthCaps split, paired with their real clips."""
    from soundctm.data.synthcaps import heldout_prompts

    split = PROMPT_SETS[name]
    prompts = heldout_prompts(n, seed, split)
    return PromptSet(name, [c for c, _ in prompts], [a for _, a in prompts], synthcaps_reference(n, seed, split), True,
                     split)


def manifest_prompt_set(path: Path, n: int | None) -> PromptSet:
    """Captions and attributes of a SynthCaps manifest CSV; its wav files are the paired reference clips."""
    from soundctm.data.synthcaps import read_manifest

    rows = read_manifest(path)[:n]

    def load():
        from soundctm.audio.io import load_audio

        waves = [load_audio(r["file_name"], 16000) for r in rows]
        length = min(len(w) for w in waves)
        return np.stack([w[:length] for w in waves]).astype(np.float32), 16000

    return PromptSet(str(path), [r["caption"] for r in rows], [r["attrs"] for r in rows], load, True)


def text_prompt_set(path: Path, n: int | None, seed: int) -> PromptSet:
    """One caption per non-empty line; FD reference: as many held-out SynthCaps clips (unpaired)."""
    captions = [line.strip() for line in path.read_text().splitlines() if line.strip()][:n]
    return PromptSet(str(path), captions, None, synthcaps_reference(len(captions), seed, "heldout"), False)


def load_prompt_set(spec: str, n: int | None, seed: int = 0) -> PromptSet:
    """``synthcaps-heldout``, ``synthcaps-heldout-combo`` (n prompts), a SynthCaps manifest ``.csv`` or a text file."""
    if spec in PROMPT_SETS:
        if n is None:
            raise ValueError(f"n must be given for the prompt set {spec!r}")
        return synthcaps_prompt_set(spec, n, seed)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"prompts must be one of {sorted(PROMPT_SETS)} or an existing file, got {spec!r}")
    prompts = manifest_prompt_set(path, n) if path.suffix == ".csv" else text_prompt_set(path, n, seed)
    if len(prompts) == 0:
        raise ValueError(f"prompts file {spec!r} holds no prompts")
    return prompts


# ---- generation ----

@dataclass
class Generated:
    """Generated clips ``[N, T]`` at ``sample_rate`` with timing: total seconds and NFE per clip."""

    waveforms: np.ndarray
    sample_rate: int
    seconds: float
    nfe: int

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio per second of compute."""
        return self.waveforms.shape[0] * self.waveforms.shape[1] / self.sample_rate / max(self.seconds, 1e-9)


def generate_batched(pipe, captions: Sequence[str], batch_size: int = 16, seed: int = 0, **generate_kw) -> Generated:
    """``pipe.generate`` over batches; batch b uses seed ``seed + b`` (the same noise for the same batch and seed)."""
    waves, seconds, nfe, sr = [], 0.0, 0, 16000
    for b, lo in enumerate(range(0, len(captions), batch_size)):
        t0 = time.perf_counter()
        audio = pipe.generate(list(captions[lo:lo + batch_size]), seed=seed + b, **generate_kw)
        seconds += time.perf_counter() - t0
        waves.append(audio.waveforms)
        nfe, sr = audio.info["nfe"], audio.sample_rate
    return Generated(np.concatenate(waves), sr, seconds, nfe)


# ---- attribute accuracy ----

def applicable_attributes(attrs: dict) -> tuple[str, ...]:
    """Attributes a SynthCaps prompt fixes: source, loudness, the extras, and pitch/count/sweep/fade where the source
    has them (a caption that names no fade of a continuous sound means 'no fade')."""
    source = attrs["source"]
    keys = ["source", "loudness", "second_source", "background", "reverb"]
    keys += [k for k, group in (("pitch", PITCHED), ("count", COUNTED), ("sweep", SWEPT), ("fade", CONTINUOUS))
             if source in group]
    return tuple(keys)


def classifier_verdicts(predicted: Sequence[dict], attrs: Sequence[dict],
                        scored: Sequence[str] = SCORED_ATTRIBUTES) -> list[dict[str, bool]]:
    """Per clip, per applicable ``scored`` attribute the classifier predicts: predicted value == prompted value."""
    return [{k: p[k] == a.get(k) for k in applicable_attributes(a) if k in p and k in scored}
            for p, a in zip(predicted, attrs)]


@dataclass(frozen=True)
class AttributeAccuracy:
    """Accuracy and support per attribute; ``mean``: macro mean over ``keys``; ``all_correct``: clips right on all."""

    accuracy: dict[str, float]
    support: dict[str, int]
    mean: float
    all_correct: float
    keys: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy_of_verdicts(verdicts: Sequence[dict[str, bool]], keys: Sequence[str]) -> AttributeAccuracy:
    """Fold per-clip verdicts ``[{attribute: correct}]`` into per-attribute accuracies (``keys``: the headline set)."""
    names = sorted({k for v in verdicts for k in v})
    support = {k: sum(k in v for v in verdicts) for k in names}
    accuracy = {k: sum(v[k] for v in verdicts if k in v) / support[k] for k in names}
    headline = [k for k in keys if k in accuracy]
    mean = float(np.mean([accuracy[k] for k in headline])) if headline else float("nan")
    scored = [v for v in verdicts if any(k in v for k in keys)]
    all_correct = float(np.mean([all(v[k] for k in keys if k in v) for v in scored])) if scored else float("nan")
    return AttributeAccuracy(accuracy, support, mean, all_correct, tuple(headline))


def judge_verdicts(waveforms: np.ndarray, sample_rate: int, attrs: Sequence[dict]) -> list[dict[str, bool]]:
    """``synthcaps_judge.judge`` of every clip ``[N, T]`` against its prompt's attributes."""
    from soundctm.metrics.synthcaps_judge import judge

    return [judge(w, sample_rate, a) for w, a in zip(waveforms, attrs)]


def verdict_agreement(a: Sequence[dict[str, bool]], b: Sequence[dict[str, bool]]) -> dict[str, float]:
    """Per attribute both verdict lists judge, the fraction of clips where they agree (both right or both wrong).

    With ``a`` from the classifier and ``b`` from the signal measurements, a check that the classifier reads
    generated audio the way the measurements do.
    """
    keys = sorted({k for v in a for k in v} & {k for v in b for k in v})
    pairs = {k: [x[k] == y[k] for x, y in zip(a, b) if k in x and k in y] for k in keys}
    return {k: float(np.mean(v)) for k, v in pairs.items() if v}


# ---- preview fidelity ----

@dataclass(frozen=True)
class PreviewFidelity:
    """How much of the 1-step previews' content N-step results from the same noise keep.

    agreement[h]: fraction of prompts whose classifier prediction for attribute h is the same for both results;
    distance: mean ‖e_N,i − e_1,i‖ of paired embeddings; relative_distance: that over the mean distance between
    results of *different* prompts, ‖e_N,i − e_1,j‖ (i ≠ j) — 0: the N-step result is the preview, ≈ 1: no more related
    to its own preview than to another prompt's.
    """

    agreement: dict[str, float]
    mean_agreement: float
    distance: float
    relative_distance: float
    keys: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def mean_pairwise_distances(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean ‖a_i − b_i‖, mean over i ≠ j of ‖a_i − b_j‖) for ``a, b [N, D]``, N ≥ 2."""
    d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    n = len(a)
    return float(np.trace(d) / n), float((d.sum() - np.trace(d)) / (n * (n - 1)))


def preview_fidelity(preview: SynthCapsOutputs, refined: SynthCapsOutputs,
                     keys: Sequence[str] = CORE_ATTRIBUTES) -> PreviewFidelity:
    """Agreement of attribute predictions and embedding distance between paired previews and N-step results."""
    a, b = np.asarray(preview.embeddings, np.float64), np.asarray(refined.embeddings, np.float64)
    if a.shape != b.shape or a.ndim != 2 or len(a) < 2:
        raise ValueError(f"preview and refined must hold the same N >= 2 clips, got {a.shape} and {b.shape}")
    pa, pb = preview.attributes(), refined.attributes()
    agreement = {h: float(np.mean([x[h] == y[h] for x, y in zip(pa, pb)])) for h in preview.logits}
    paired, unpaired = mean_pairwise_distances(a, b)
    headline = [k for k in keys if k in agreement]
    return PreviewFidelity(agreement, float(np.mean([agreement[k] for k in headline])), paired,
                           paired / max(unpaired, 1e-12), tuple(headline))


# ---- one evaluation ----

def evaluate_clips(generated: SynthCapsOutputs, waveforms: np.ndarray, sample_rate: int, prompts: PromptSet,
                   metrics: Sequence[str], reference: SynthCapsOutputs | None = None) -> dict:
    """The requested metrics (not clap) of generated clips, given their classifier outputs and the reference's."""
    from soundctm.metrics.scores import inception_score, kl_divergence

    out: dict = {}
    if "fd_synth" in metrics:
        out["fd_synth"] = frechet_distance_of_embeddings(reference.embeddings, generated.embeddings)
    if "attr" in metrics:
        out["attr"] = accuracy_of_verdicts(classifier_verdicts(generated.attributes(), prompts.attrs),
                                           CORE_ATTRIBUTES).to_dict()
    if "judge" in metrics:
        out["judge"] = accuracy_of_verdicts(judge_verdicts(waveforms, sample_rate, prompts.attrs),
                                            JUDGE_KEYS).to_dict()
    if "kl" in metrics:
        kl = kl_divergence(reference.logits["source"], generated.logits["source"], kind="softmax", from_logits=True)
        out["kl"] = {"ref_to_gen": kl.kl_ref_to_gen, "gen_to_ref": kl.kl_gen_to_ref}
    if "is" in metrics:
        score = inception_score(generated.logits["source"], splits=min(10, len(waveforms)), from_logits=True)
        out["is"] = {"mean": score.mean, "std": score.std}
    return out


def fd_floor(embedder, reference: SynthCapsOutputs, split: str, seed: int) -> float:
    """FD_synth between the reference clips and as many other real clips of ``split`` (seed ``seed``): what a
    perfect generator would score at this sample size (FD is biased upwards by O(1/n))."""
    from soundctm.metrics.synthcaps_classifier import synthcaps_waves

    other = embedder.embed(synthcaps_waves(len(reference.embeddings), seed, split)[0], 16000)
    return frechet_distance_of_embeddings(reference.embeddings, other)


def headline(metrics: dict) -> dict[str, float]:
    """One number per metric: fd_synth (and its real-clip floor), attr/judge mean accuracy, kl (ref→gen), is, clap."""
    pick = {"fd_synth": lambda v: v, "fd_synth_floor": lambda v: v, "attr": lambda v: v["mean"],
            "judge": lambda v: v["mean"], "kl": lambda v: v["ref_to_gen"], "is": lambda v: v["mean"],
            "clap": lambda v: v}
    return {k: float(pick[k](v)) for k, v in metrics.items() if k in pick}

