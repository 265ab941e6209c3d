"""The audio embedder interface: ``Embedder`` (validate, resample, batch, embed) and ``ClassifierEmbedder`` (+ logits).

``embedder.embed(waveforms [N, T], sample_rate) -> np.ndarray [N, D]``: waves are resampled (soxr) to the embedder's
own ``sample_rate`` and embedded per clip (``mode="clip"``) or per frame and averaged over frames (``mode="frame"``).
A subclass implements ``embed_batch`` (or ``forward_batch`` for a classifier). The backends and the registry that
builds them by name live in ``soundctm.metrics.embedders``; the SynthCaps classifier's embedder in
``soundctm.metrics.synthcaps_classifier``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from soundctm.audio.io import resample

EMBEDDING_MODES = ("clip", "frame")


@dataclass(frozen=True)
class EmbeddingsAndLogits:
    """Clip embeddings ``[N, D]`` and classifier logits ``[N, C]`` from one forward pass."""

    embeddings: np.ndarray
    logits: np.ndarray


def as_waveforms(waveforms, sample_rate: int) -> np.ndarray:
    """Validate a ``[N, T]`` batch of mono waves (numpy or torch) and its rate; return float32 numpy."""
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    if isinstance(waveforms, torch.Tensor):
        waveforms = waveforms.detach().cpu().numpy()
    waves = np.asarray(waveforms, dtype=np.float32)
    if waves.ndim != 2 or waves.shape[0] == 0 or waves.shape[1] == 0:
        raise ValueError(f"waveforms must be a non-empty 2-D batch [N, T] of mono clips, got shape {waves.shape}")
    if not np.all(np.isfinite(waves)):
        raise ValueError("waveforms contain NaN or infinite samples")
    return waves


def resample_batch(waves: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample every row of ``[N, T]`` from ``sr_in`` to ``sr_out`` with soxr → ``[N, T']``."""
    if sr_in == sr_out:
        return waves
    return np.ascontiguousarray(resample(np.ascontiguousarray(waves.T), int(sr_in), int(sr_out)).T)


class Embedder:
    """Base: validation, resampling and batching; subclasses implement ``embed_batch``."""

    name = "embedder"

    def __init__(self, model: nn.Module, sample_rate: int, mode: str, dim: int, batch_size: int = 8,
                 device: str | torch.device = "cpu"):
        if mode not in EMBEDDING_MODES:
            raise ValueError(f"mode must be one of {EMBEDDING_MODES}, got {mode!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.to(device).eval()
        self.sample_rate, self.mode, self.dim = int(sample_rate), mode, int(dim)
        self.batch_size, self.device = batch_size, torch.device(device)

    def embed_batch(self, wave: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[B, D]`` of waves ``[B, T]`` already at ``self.sample_rate``."""
        raise NotImplementedError

    def batches(self, waveforms, sample_rate: int):
        """Yield float32 tensors ``[B, T']`` on the device, resampled (batch by batch) to ``self.sample_rate``."""
        waves = as_waveforms(waveforms, sample_rate)
        for start in range(0, len(waves), self.batch_size):
            chunk = resample_batch(waves[start:start + self.batch_size], sample_rate, self.sample_rate)
            yield torch.from_numpy(chunk).to(self.device)

    @torch.no_grad()
    def embed(self, waveforms, sample_rate: int) -> np.ndarray:
        """Embeddings ``[N, D]`` (float32) of mono clips ``[N, T]`` at ``sample_rate`` Hz."""
        rows = [self.embed_batch(wave).float().cpu().numpy() for wave in self.batches(waveforms, sample_rate)]
        return np.concatenate(rows, axis=0)


class ClassifierEmbedder(Embedder):
    """An embedder that is also a classifier: ``classify`` gives logits ``[N, C]`` for KL and IS."""

    multi_label = True  # sigmoid outputs (KL kind "sigmoid"/"bernoulli"); False: softmax

    def __init__(self, model: nn.Module, sample_rate: int, mode: str, dim: int, num_classes: int, **kw):
        super().__init__(model, sample_rate, mode, dim, **kw)
        self.num_classes = int(num_classes)

    def forward_batch(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings ``[B, D]``, logits ``[B, C]``) of waves ``[B, T]`` at ``self.sample_rate``."""
        raise NotImplementedError

    def embed_batch(self, wave: torch.Tensor) -> torch.Tensor:
        return self.forward_batch(wave)[0]

    @torch.no_grad()
    def embed_and_classify(self, waveforms, sample_rate: int) -> EmbeddingsAndLogits:
        """Embeddings ``[N, D]`` and logits ``[N, C]`` in one pass."""
        outs = [self.forward_batch(wave) for wave in self.batches(waveforms, sample_rate)]
        return EmbeddingsAndLogits(embeddings=torch.cat([e for e, _ in outs]).float().cpu().numpy(),
                                   logits=torch.cat([lg for _, lg in outs]).float().cpu().numpy())

    def classify(self, waveforms, sample_rate: int) -> np.ndarray:
        """Classifier logits ``[N, C]`` of clips ``[N, T]``."""
        return self.embed_and_classify(waveforms, sample_rate).logits
