"""The SynthCaps classifier-embedder: a small log-mel CNN trained by the project on SynthCaps clips.

One softmax head per SynthCaps attribute (``source``, ``pitch``, ``count``, ``sweep``, ``loudness`` and the extras
``second_source``, ``background``, ``reverb``, ``fade``; classes as in ``soundctm.data.synthcaps.VOCABULARY``, ``None``
being a class of its own) reads the attributes off a clip; the penultimate layer is the embedding of FD_synth.
Trained on clean clips and on clips that went through mel → (VAE →) Griffin-Lim, plus mel-domain gain, blur and
noise-floor augmentation, so that it also reads generated audio (``recipes/train_synthcaps_classifier.py``).

    emb = build_embedder("synthcaps")                 # the bundled weights (soundctm/pretrained/synthcaps-classifier)
    out = emb.embed_and_predict(waves, 16000)         # embeddings [N, 128], logits {attribute: [N, C]}
    attrs = emb.predict_attributes(waves, 16000)      # [{attribute: value}]

Saved as ``config.json`` + ``model.safetensors`` (+ ``provenance.json``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundctm.audio.mel import MelConfig, MelSpectrogram
from soundctm.data.synthcaps import VOCABULARY
from soundctm.metrics.embedder_base import ClassifierEmbedder
from soundctm.nn.model_dir import load_model_dir, save_model_dir

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "pretrained" / "synthcaps-classifier"
HEADS: tuple[str, ...] = tuple(VOCABULARY)  # source, pitch, count, sweep, loudness, second_source, background, ...
CORE_ATTRIBUTES = ("source", "pitch", "count", "sweep", "loudness")
COMBO_SEED_OFFSET = 1000  # training draws heldout_combo clips at seed + 1000; evaluations use other seeds


@dataclass(frozen=True)
class SynthCapsClassifierConfig:
    """Architecture: log-mel front-end, conv stages (each halving both axes), embedding size, heads."""

    sample_rate: int = 16000
    n_mels: int = 64
    hop_length: int = 320  # 20 ms frames: events are >= 0.45 s apart, so a coarse time axis is enough
    channels: tuple[int, ...] = (16, 32, 48, 64)
    embedding_dim: int = 128
    heads: tuple[str, ...] = HEADS
    log_mel_offset: float = 5.5  # input = (log-mel + offset) / scale, fixed (absolute level is an attribute)
    log_mel_scale: float = 3.0

    def __post_init__(self):
        unknown = [h for h in self.heads if h not in VOCABULARY]
        if unknown or not self.heads:
            raise ValueError(f"heads must be a non-empty subset of {tuple(VOCABULARY)}, got {self.heads}")
        if self.n_mels % 2 ** len(self.channels):
            raise ValueError(f"n_mels must be divisible by 2**len(channels)={2 ** len(self.channels)}")

    @staticmethod
    def from_dict(d: dict) -> SynthCapsClassifierConfig:
        return SynthCapsClassifierConfig(**{**d, "channels": tuple(d["channels"]), "heads": tuple(d["heads"])})

    def mel_config(self) -> MelConfig:
        return MelConfig(sample_rate=self.sample_rate, hop_length=self.hop_length, n_mels=self.n_mels,
                         fmax=self.sample_rate / 2)

    def num_classes(self, head: str) -> int:
        return len(VOCABULARY[head])


@dataclass(frozen=True)
class ClassifierOutput:
    """Embedding ``[B, D]`` and logits per attribute head ``{head: [B, C_head]}``."""

    embedding: torch.Tensor
    logits: dict[str, torch.Tensor]


def conv_stage(c_in: int, c_out: int) -> nn.Sequential:
    """3×3 conv → batch norm → SiLU → 2×2 max-pool."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.SiLU(), nn.MaxPool2d(2))


class SynthCapsClassifier(nn.Module):
    """Wave ``[B, T]`` → log-mel → conv stages → (mean, max) over time → embedding ``[B, D]`` → a head per attribute."""

    def __init__(self, config: SynthCapsClassifierConfig = SynthCapsClassifierConfig()):
        super().__init__()
        self.config = c = config
        self.mel = MelSpectrogram(c.mel_config())
        widths = (1, *c.channels)
        self.stages = nn.Sequential(*[conv_stage(a, b) for a, b in zip(widths[:-1], widths[1:])])
        pooled_dim = 2 * c.channels[-1] * (c.n_mels // 2 ** len(c.channels))
        self.embed = nn.Linear(pooled_dim, c.embedding_dim)
        self.heads = nn.ModuleDict({h: nn.Linear(c.embedding_dim, c.num_classes(h)) for h in c.heads})

    def normalise(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Fixed affine map of the log-mel ``[B, M, F]`` to roughly [−2, 2] (no per-clip normalisation)."""
        return (log_mel + self.config.log_mel_offset) / self.config.log_mel_scale

    def embedding_of_mel(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Embedding ``[B, D]`` of log-mels ``[B, n_mels, F]`` (F ≥ 2**stages)."""
        h = self.stages(self.normalise(log_mel).unsqueeze(1))  # [B, C, M', F']
        h = h.flatten(1, 2)  # frequency kept: [B, C·M', F']
        return F.silu(self.embed(torch.cat([h.mean(-1), h.amax(-1)], dim=1)))

    def logits_of_embedding(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        return {h: head(embedding) for h, head in self.heads.items()}

    def forward_mel(self, log_mel: torch.Tensor) -> ClassifierOutput:
        emb = self.embedding_of_mel(log_mel)
        return ClassifierOutput(emb, self.logits_of_embedding(emb))

    def forward(self, wave: torch.Tensor) -> ClassifierOutput:
        """Wave ``[B, T]`` at ``config.sample_rate`` → embedding and per-head logits."""
        return self.forward_mel(self.mel(wave))

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (``soundctm.nn.model_dir``)."""
        return save_model_dir(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path = DEFAULT_DIR) -> SynthCapsClassifier:
        """Rebuild a net written by `save_pretrained` (or `Trainer.export`), in eval mode."""
        net = load_model_dir(directory, lambda d: cls(SynthCapsClassifierConfig.from_dict(d)))
        return net.eval().requires_grad_(False)


# ---- labels ----

def encode_attributes(attrs: dict, heads: Sequence[str] = HEADS) -> list[int]:
    """Class index per head of an attribute dict (the position of its value in VOCABULARY)."""
    return [VOCABULARY[h].index(attrs.get(h)) for h in heads]


def decode_logits(logits: dict[str, np.ndarray]) -> list[dict]:
    """Argmax attribute dicts ``[{head: value}]`` from per-head logits ``{head: [N, C]}``."""
    idx = {h: np.asarray(v).argmax(axis=1) for h, v in logits.items()}
    n = len(next(iter(idx.values())))
    return [{h: VOCABULARY[h][int(i[k])] for h, i in idx.items()} for k in range(n)]


# ---- the embedder ----

@dataclass(frozen=True)
class SynthCapsOutputs:
    """Embeddings ``[N, D]`` and per-head logits ``{head: [N, C]}`` of N clips."""

    embeddings: np.ndarray
    logits: dict[str, np.ndarray]

    def attributes(self) -> list[dict]:
        """Predicted attribute dicts, one per clip."""
        return decode_logits(self.logits)


class SynthCapsEmbedder(ClassifierEmbedder):
    """The classifier behind the embedder interface; ``classify`` gives the ``source`` head (softmax, 11 classes)."""

    name = "synthcaps"
    multi_label = False

    def __init__(self, model: SynthCapsClassifier, **kw):
        c = model.config
        super().__init__(model, c.sample_rate, "clip", c.embedding_dim, c.num_classes("source"), **kw)

    def forward_batch(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(wave)
        return out.embedding, out.logits["source"]

    @torch.no_grad()
    def embed_and_predict(self, waveforms, sample_rate: int) -> SynthCapsOutputs:
        """Embeddings and all heads' logits of clips ``[N, T]`` in one pass."""
        outs = [self.model(wave) for wave in self.batches(waveforms, sample_rate)]
        logits = {h: torch.cat([o.logits[h] for o in outs]).float().cpu().numpy() for h in self.model.heads}
        return SynthCapsOutputs(torch.cat([o.embedding for o in outs]).float().cpu().numpy(), logits)

    def predict_attributes(self, waveforms, sample_rate: int) -> list[dict]:
        """Predicted attribute dicts of clips ``[N, T]``."""
        return self.embed_and_predict(waveforms, sample_rate).attributes()


def build_synthcaps_embedder(path=None, batch_size: int = 32, **kw) -> SynthCapsEmbedder:
    """The SynthCaps classifier-embedder from a local folder (default: the bundled weights)."""
    return SynthCapsEmbedder(SynthCapsClassifier.from_pretrained(DEFAULT_DIR if path is None else path),
                             batch_size=batch_size, **kw)


# ---- training data and augmentation ----

@dataclass(frozen=True)
class ClassifierTraining:
    """Training recipe: clean SynthCaps clips + vocoded (mel → [VAE →] Griffin-Lim) copies, mel-domain augmentation."""

    n_clean: int = 5000  # train split
    n_combo: int = 500  # heldout_combo clips (seed + COMBO_SEED_OFFSET): the classifier must read those combinations
    n_vocoded: int = 512  # per vocoding chain
    griffin_lim_iters: int = 8
    steps: int = 600
    batch: int = 64
    vocoded_fraction: float = 0.35  # of each batch
    lr: float = 3e-3
    weight_decay: float = 1e-4
    gain_db: float = 2.5  # uniform random gain in ±gain_db
    blur_probability: float = 0.4
    max_blur_bands: float = 1.5  # Gaussian σ along the mel axis
    max_blur_frames: float = 2.5  # Gaussian σ along time
    noise_probability: float = 0.3
    seed: int = 0


def gaussian_kernel(sigma: float, radius: int) -> torch.Tensor:
    """Normalised 1-D Gaussian ``[2·radius + 1]`` (a delta for σ ≈ 0)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / max(sigma, 1e-3)) ** 2)
    return k / k.sum()


def blur_log_mel(log_mel: torch.Tensor, sigma_bands: float, sigma_frames: float, floor: float) -> torch.Tensor:
    """Separable Gaussian blur of the mel *power* (energy kept), back to log-magnitude: ``[B, M, F]``."""
    power = torch.exp(2 * log_mel).unsqueeze(1)
    kf, kt = gaussian_kernel(sigma_bands, 4), gaussian_kernel(sigma_frames, 6)
    power = F.conv2d(F.pad(power, (0, 0, 4, 4), mode="replicate"), kf.view(1, 1, -1, 1))
    power = F.conv2d(F.pad(power, (6, 6, 0, 0), mode="replicate"), kt.view(1, 1, 1, -1))
    return (0.5 * torch.log(power.squeeze(1))).clamp_min(floor)


def augment_log_mels(log_mel: torch.Tensor, training: ClassifierTraining, floor: float,
                     generator: torch.Generator) -> torch.Tensor:
    """Random gain (±gain_db), Gaussian mel blur and a noise floor, each per clip: ``[B, M, F]`` → ``[B, M, F]``."""
    b = log_mel.shape[0]
    rand = lambda *s: torch.rand(*s, generator=generator)  # noqa: E731
    gain = (2 * rand(b, 1, 1) - 1) * training.gain_db * math.log(10) / 20
    out = (log_mel + gain).clamp_min(floor)
    blur = rand(b) < training.blur_probability
    if blur.any():
        sb, st = float(rand(()) * training.max_blur_bands), float(rand(()) * training.max_blur_frames)
        out[blur] = blur_log_mel(out[blur], sb, st, floor)
    noisy = rand(b) < training.noise_probability
    if noisy.any():
        level = torch.exp(-10 + 3 * rand(int(noisy.sum()), 1, 1))  # magnitude floor e^-10 … e^-7
        noise = level * torch.randn(out[noisy].shape, generator=generator).abs()
        out[noisy] = torch.log(torch.exp(out[noisy]) + noise).clamp_min(floor)
    return out


def synthcaps_waves(n: int, seed: int, split: str, sr: int = 16000, start: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Waves ``[n, T]`` and attrs of clips start … start+n−1 of a SynthCaps split."""
    from soundctm.data.synthcaps import SynthCaps

    data = SynthCaps(start + n, seed, split, sr=sr)
    clips = [data[i] for i in range(start, start + n)]
    return np.stack([c[0] for c in clips]), [c[2] for c in clips]


@torch.no_grad()
def log_mels_of_waves(waves: np.ndarray, mel: MelSpectrogram, chunk: int = 256) -> torch.Tensor:
    """Log-mels ``[N, M, F]`` (float16) of waves ``[N, T]``."""
    return torch.cat([mel(torch.from_numpy(waves[i:i + chunk])).half() for i in range(0, len(waves), chunk)])


def labels_of(attrs: Sequence[dict], heads: Sequence[str] = HEADS) -> torch.Tensor:
    """Class indices ``[N, heads]`` of attribute dicts."""
    return torch.tensor([encode_attributes(a, heads) for a in attrs])


@torch.no_grad()
def vocode_waves(waves: np.ndarray, mel: MelSpectrogram, vocoder, vae=None, chunk: int = 32) -> np.ndarray:
    """Round trip of waves ``[N, T]``: log-mel (the generator's front-end) → (VAE →) vocoder → ``[N, T]``."""
    out = []
    for lo in range(0, len(waves), chunk):
        x = mel(torch.from_numpy(waves[lo:lo + chunk]))
        if vae is not None:
            x = vae.decode(vae.encode(x), x.shape[-1])
        wave = vocoder(x).float().numpy()
        out.append(np.pad(wave, ((0, 0), (0, max(0, waves.shape[1] - wave.shape[1]))))[:, : waves.shape[1]])
    return np.concatenate(out).astype(np.float32)


def head_losses(out: ClassifierOutput, labels: torch.Tensor, heads: Sequence[str]) -> torch.Tensor:
    """Cross-entropy per head, summed: labels ``[B, heads]``."""
    return sum(F.cross_entropy(out.logits[h], labels[:, i]) for i, h in enumerate(heads))


def train_synthcaps_classifier(clean: tuple[torch.Tensor, torch.Tensor],
                               vocoded: tuple[torch.Tensor, torch.Tensor] | None,
                               config: SynthCapsClassifierConfig = SynthCapsClassifierConfig(),
                               training: ClassifierTraining = ClassifierTraining(), log=None) -> SynthCapsClassifier:
    """AdamW + cosine schedule on (log-mels ``[N, M, F]``, labels ``[N, heads]``) with augmentation."""
    g = torch.Generator().manual_seed(training.seed)
    torch.manual_seed(training.seed)
    net = SynthCapsClassifier(config).train()
    floor = math.log(net.mel.config.clamp_min)
    opt = torch.optim.AdamW(net.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, training.lr, total_steps=training.steps, pct_start=0.1)
    n_voc = 0 if vocoded is None else int(round(training.batch * training.vocoded_fraction))
    for step in range(training.steps):
        x, y = sample_batch(clean, training.batch - n_voc, g)
        if n_voc:
            xv, yv = sample_batch(vocoded, n_voc, g)
            x, y = torch.cat([x, xv]), torch.cat([y, yv])
        loss = head_losses(net.forward_mel(augment_log_mels(x.float(), training, floor, g)), y, config.heads)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step % 100 == 0 or step == training.steps - 1):
            log(step, float(loss.detach()))
    return net.eval().requires_grad_(False)


def sample_batch(data: tuple[torch.Tensor, torch.Tensor], n: int, g: torch.Generator):
    """n random rows (with replacement) of (log-mels, labels)."""
    idx = torch.randint(0, len(data[0]), (n,), generator=g)
    return data[0][idx], data[1][idx]


# ---- accuracy ----

@torch.no_grad()
def predict_log_mels(net: SynthCapsClassifier, log_mel: torch.Tensor, batch: int = 128) -> dict[str, np.ndarray]:
    """Per-head logits ``{head: [N, C]}`` of log-mels ``[N, M, F]``."""
    outs = [net.forward_mel(log_mel[i:i + batch].float()).logits for i in range(0, len(log_mel), batch)]
    return {h: torch.cat([o[h] for o in outs]).numpy() for h in net.config.heads}


def per_attribute_accuracy(predicted: Sequence[dict], truth: Sequence[dict], heads: Sequence[str] = HEADS,
                           present_only: bool = False) -> dict[str, tuple[int, int]]:
    """(correct, total) per head; ``present_only`` counts only clips whose true value is not None/False."""
    scores = {}
    for h in heads:
        pairs = [(p[h], t.get(h)) for p, t in zip(predicted, truth)
                 if not present_only or t.get(h) not in (None, False)]
        scores[h] = (sum(p == t for p, t in pairs), len(pairs))
    return scores
