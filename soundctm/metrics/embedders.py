"""Audio embedders for FD / CLAP score / KL behind one interface, built by name from local weights (no downloads).

``embedder.embed(waveforms [N, T], sample_rate) -> np.ndarray [N, D]`` (the interface: ``embedder_base.Embedder``).
Classifier embedders (PANNs, SynthCaps) also give ``classify(...) -> logits [N, C]`` for KL / IS.

Backends: ``clap`` (transformers ClapModel folder), ``vggish`` (PyTorch-port ``.pth``), ``panns`` (Cnn14 ``.pth``),
``synthcaps`` (the project's SynthCaps classifier; default: the bundled weights).
Add one with ``register_embedder(name, builder)``; a builder is ``builder(path, **kw) -> Embedder``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

from soundctm.metrics.embedder_base import ClassifierEmbedder, Embedder

# --- CLAP (Wu et al. 2023) -----------------------------------------------------------------------------------------

class ClapEmbedder(Embedder):
    """transformers ClapModel: L2-normalised projected audio (``embed``) and text (``embed_text``) embeddings."""

    name = "clap"

    def __init__(self, model, feature_extractor, tokenizer=None, max_text_length: int = 77, **kw):
        super().__init__(model, feature_extractor.sampling_rate, "clip", model.config.projection_dim, **kw)
        self.feature_extractor, self.tokenizer, self.max_text_length = feature_extractor, tokenizer, max_text_length

    def audio_features(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature-extractor inputs, clip by clip under a fixed numpy seed (its long-clip crops are random)."""
        state = np.random.get_state()
        try:
            feats = []
            for row in wave.cpu().numpy():
                np.random.seed(0)
                feats.append(self.feature_extractor(row, sampling_rate=self.sample_rate, return_tensors="pt"))
        finally:
            np.random.set_state(state)
        return {k: torch.cat([f[k] for f in feats]).to(self.device) for k in ("input_features", "is_longer")}

    def embed_batch(self, wave: torch.Tensor) -> torch.Tensor:
        return pooled(self.model.get_audio_features(**self.audio_features(wave)))

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> np.ndarray:
        """L2-normalised projected text embeddings ``[N, D]`` of captions."""
        if self.tokenizer is None:
            raise ValueError("this CLAP folder has no tokenizer files; embed_text needs one")
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError("texts must be a non-empty list of strings")
        ids = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_text_length,
                             return_tensors="pt").to(self.device)
        out = self.model.get_text_features(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"])
        return pooled(out).float().cpu().numpy()


def pooled(out) -> torch.Tensor:
    """The normalised projection from ``get_*_features``: a tensor (transformers 4.x) or ``.pooler_output`` (5.x)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def check_path(name: str, path, want_dir: bool) -> str:
    """A local file/folder path, or a ValueError saying what the backend needs (nothing is downloaded)."""
    kind = "folder" if want_dir else "file"
    if path is None:
        raise ValueError(f"embedder {name!r} needs path=<local weights {kind}> (nothing is downloaded)")
    if not (os.path.isdir(path) if want_dir else os.path.isfile(path)):
        raise ValueError(f"path must be an existing local {kind} for embedder {name!r}, got {path}")
    return str(path)


def build_clap_embedder(path=None, **kw) -> ClapEmbedder:
    """ClapModel + ClapFeatureExtractor (+ tokenizer, if present) from a local folder."""
    path = check_path("clap", path, want_dir=True)
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    model, extractor = ClapModel.from_pretrained(path), ClapFeatureExtractor.from_pretrained(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError):
        tokenizer = None
    return ClapEmbedder(model, extractor, tokenizer, **kw)


# --- VGGish (Hershey et al. 2017) ----------------------------------------------------------------------------------

class VGGishEmbedder(Embedder):
    """VGGish: 128-D embedding per 0.96 s patch at 16 kHz, averaged over patches (``embed_frames`` keeps them)."""

    name = "vggish"

    def __init__(self, model, **kw):
        super().__init__(model, model.config.sample_rate, "frame", model.config.embedding_dim, **kw)

    def embed_batch(self, wave: torch.Tensor) -> torch.Tensor:
        return self.model.embed_frames(wave).mean(dim=1)

    @torch.no_grad()
    def embed_frames(self, waveforms, sample_rate: int) -> np.ndarray:
        """Per-patch embeddings ``[N, P, 128]`` (the original FAD pools all patches as samples)."""
        rows = [self.model.embed_frames(w).cpu().numpy() for w in self.batches(waveforms, sample_rate)]
        return np.concatenate(rows, axis=0)


def build_vggish_embedder(path=None, **kw) -> VGGishEmbedder:
    """VGGish from the PyTorch port's state-dict file."""
    from soundctm.metrics.vggish import load_vggish_port

    return VGGishEmbedder(load_vggish_port(check_path("vggish", path, want_dir=False)), **kw)


# --- PANNs Cnn14 (Kong et al. 2020) --------------------------------------------------------------------------------

class PannsEmbedder(ClassifierEmbedder):
    """Cnn14 at 32 kHz: 2048-D clip embedding and 527 AudioSet logits (multi-label, sigmoid)."""

    name = "panns"

    def __init__(self, model, **kw):
        cfg = model.config
        super().__init__(model, cfg.sample_rate, "clip", cfg.channels[-1], cfg.num_classes, **kw)

    def forward_batch(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(wave)
        return out.embedding, out.logits


def build_panns_embedder(path=None, config=None, **kw) -> PannsEmbedder:
    """Cnn14 from a ``Cnn14_mAP=0.431.pth``-style (32 kHz) or ``Cnn14_16k_*.pth`` (16 kHz) checkpoint file."""
    from soundctm.metrics.panns import load_cnn14

    return PannsEmbedder(load_cnn14(check_path("panns", path, want_dir=False), base=config), **kw)


def build_synthcaps_classifier_embedder(path=None, **kw) -> Embedder:
    """The SynthCaps classifier-embedder (FD_synth) from a local folder; default: the bundled weights."""
    from soundctm.metrics.synthcaps_classifier import build_synthcaps_embedder

    return build_synthcaps_embedder(path, **kw)


# --- registry ------------------------------------------------------------------------------------------------------

EMBEDDERS: dict[str, Callable[..., Embedder]] = {
    "clap": build_clap_embedder,
    "vggish": build_vggish_embedder,
    "panns": build_panns_embedder,
    "synthcaps": build_synthcaps_classifier_embedder,
}


def register_embedder(name: str, builder: Callable[..., Embedder], overwrite: bool = False) -> None:
    """Add ``builder(path, **kw) -> Embedder`` under ``name``."""
    if name in EMBEDDERS and not overwrite:
        raise ValueError(f"embedder {name!r} is already registered; pass overwrite=True to replace it")
    EMBEDDERS[name] = builder


def build_embedder(name: str, path: str | os.PathLike | None = None, **kw) -> Embedder:
    """Build a registered embedder from local weights; ``kw``: batch_size, device (and backend options)."""
    if name not in EMBEDDERS:
        raise ValueError(f"name must be one of {sorted(EMBEDDERS)}, got {name!r}")
    return EMBEDDERS[name](path, **kw)
