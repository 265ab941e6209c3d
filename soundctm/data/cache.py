"""Latent cache: a dataset pre-encoded into VAE latents + text embeddings, so training reads tensors only.

On disk (``write_cache`` / ``LatentCache.save``)::

    index.json                 captions (unique, [0] = "" the unconditional caption), per-sample attributes,
                               shard list, latent shape, text-encoder / mel / source metadata
    text.safetensors           tokens [U, L, D], mask [U, L] bool, pooled [U, P]: one row per unique caption
    latents-00000.safetensors  latent [k, ...], caption_index [k] int64  (``shard_size`` samples per shard)

Captions repeat (SynthCaps), so each text embedding is stored once and samples point to it by index. Classifier-free
guidance dropout is done by the training loop: swap a sample's text for ``unconditional`` (row 0).
CLI: ``soundctm cache --data MANIFEST|synthcaps --vae DIR --text-encoder minilm --out DIR [--n N --seed S]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from soundctm.audio.io import crop_or_pad
from soundctm.audio.text import UNCONDITIONAL_CAPTION, TextEmbedding
from soundctm.cli_errors import CliError, Parser, one_line_warnings, report
from soundctm.devices import check_device

INDEX_FILE, TEXT_FILE, FORMAT = "index.json", "text.safetensors", "soundctm-latent-cache"
UNCONDITIONAL_INDEX = 0

Example = tuple  # (wave [T] array/tensor, caption str, attrs dict)


def concat_embeddings(parts: list[TextEmbedding]) -> TextEmbedding:
    """Concatenate along the batch, zero-padding every part to the longest L: ``Σ B_i`` rows."""
    length = max(p.tokens.shape[1] for p in parts)
    tokens = torch.cat([torch.nn.functional.pad(p.tokens, (0, 0, 0, length - p.tokens.shape[1])) for p in parts])
    mask = torch.cat([torch.nn.functional.pad(p.mask, (0, length - p.mask.shape[1])) for p in parts])
    return TextEmbedding(tokens, mask, torch.cat([p.pooled for p in parts]))


def encode_caption_table(captions: list[str], text_encoder, batch_size: int = 64) -> TextEmbedding:
    """Embeddings of ``captions`` (``[U, L, D]`` etc., on CPU); the empty caption is allowed (unconditional)."""
    chunks = [captions[i : i + batch_size] for i in range(0, len(captions), batch_size)]
    parts = [text_encoder.encode(chunk, allow_empty=True).to("cpu") for chunk in chunks]
    return concat_embeddings(parts)


class CaptionTable:
    """Unique captions in first-seen order, with the unconditional caption ``""`` at index 0."""

    def __init__(self):
        self.captions: list[str] = [UNCONDITIONAL_CAPTION]
        self._index = {UNCONDITIONAL_CAPTION: UNCONDITIONAL_INDEX}

    def index(self, caption: str) -> int:
        """Index of ``caption``, adding it if new."""
        if caption not in self._index:
            self._index[caption] = len(self.captions)
            self.captions.append(caption)
        return self._index[caption]


def json_value(value):
    """A JSON-serialisable version of an attribute value (numpy scalars/arrays → Python, else str)."""
    if isinstance(value, (np.generic, np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def json_default(obj):
    """``json.dumps`` fallback: dataclasses (e.g. a manifest's SkipReport) as dicts, anything else via json_value."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else json_value(obj)


def attribute_columns(rows: list[dict]) -> dict[str, list]:
    """Per-sample attribute dicts → ``{column: [value per sample]}`` (None where a sample lacks a column)."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    return {name: [json_value(row.get(name)) for row in rows] for name in names}


def encode_latents(waves: torch.Tensor, mel, vae) -> torch.Tensor:
    """VAE latents of a batch of waves: ``[B, T] -> mel [B, n_mels, F] -> latent [B, ...]`` (no grad)."""
    with torch.no_grad():
        return vae.encode(mel(waves))


def batched_examples(examples: Iterable[Example], batch_size: int, clip_samples: int | None):
    """Group examples into ``(waves [b, T], captions, attrs)``, every wave cropped/padded to one length."""
    iterator = iter(examples)
    while batch := list(islice(iterator, batch_size)):
        waves = [np.asarray(w, dtype=np.float32).reshape(-1) for w, _, _ in batch]
        clip_samples = clip_samples or waves[0].shape[0]
        stacked = torch.from_numpy(np.stack([crop_or_pad(w, clip_samples) for w in waves]))
        yield stacked, [c for _, c, _ in batch], [dict(a or {}) for _, _, a in batch]


def encoded_batches(examples, vae, mel, batch_size: int = 16, clip_samples: int | None = None,
                    device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, list[str], list[dict]]]:
    """``(latents [b, ...] on CPU, captions, attrs)`` per batch of examples."""
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    for waves, captions, attrs in batched_examples(examples, int(batch_size), clip_samples):
        yield encode_latents(waves.to(device), mel, vae).float().cpu(), captions, attrs


def text_encoder_meta(text_encoder) -> dict:
    """What the cache records about the text encoder (whatever of these attributes it has)."""
    keys = ("name", "dim", "pooled_dim", "max_length")
    meta = {k: getattr(text_encoder, k) for k in keys if isinstance(getattr(text_encoder, k, None), (int, str))}
    return {"class": type(text_encoder).__name__, **meta}


@dataclass
class LatentCache:
    """An in-memory latent cache: ``latents [N, ...]``, ``caption_index [N]``, the unique-caption text table."""

    latents: torch.Tensor
    caption_index: torch.Tensor
    captions: list[str]
    text: TextEmbedding
    attributes: dict[str, list] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.latents.shape[0]

    @property
    def unconditional(self) -> TextEmbedding:
        """The embedding of ``""`` (CFG's null condition): ``[1, L, D]``, padded like the table."""
        i = slice(UNCONDITIONAL_INDEX, UNCONDITIONAL_INDEX + 1)
        return TextEmbedding(self.text.tokens[i], self.text.mask[i], self.text.pooled[i])

    def save(self, out_dir: str | os.PathLike, shard_size: int = 1024) -> Path:
        """Write shards, the text table and ``index.json`` to ``out_dir``; returns it."""
        writer = CacheWriter(out_dir, shard_size)
        writer.add(self.latents, self.caption_index)
        return writer.finish(self.captions, self.text, self.attributes, self.meta)


def build_cache(examples: Iterable[Example], vae, text_encoder, mel=None, batch_size: int = 16,
                clip_samples: int | None = None, device: torch.device | str = "cpu", meta: dict | None = None
                ) -> LatentCache:
    """Encode ``(wave, caption, attrs)`` examples into an in-memory LatentCache (tests, small runs)."""
    mel = default_mel(vae) if mel is None else mel
    table, latents, indices, attrs = CaptionTable(), [], [], []
    for lat, caps, att in encoded_batches(examples, vae, mel, batch_size, clip_samples, device):
        latents.append(lat)
        indices += [table.index(c) for c in caps]
        attrs += att
    if not latents:
        raise ValueError("examples must yield at least one (wave, caption, attrs) item")
    text = encode_caption_table(table.captions, text_encoder)
    meta = {"text_encoder": text_encoder_meta(text_encoder), "mel": mel_meta(mel), **(meta or {})}
    return LatentCache(torch.cat(latents), torch.tensor(indices, dtype=torch.long), table.captions, text,
                       attribute_columns(attrs), meta)


class CacheWriter:
    """Streams latents into fixed-size safetensors shards; ``finish`` writes the text table and the index."""

    def __init__(self, out_dir: str | os.PathLike, shard_size: int = 1024):
        if int(shard_size) != shard_size or shard_size < 1:
            raise ValueError(f"shard_size must be an integer >= 1, got {shard_size!r}")
        self.out_dir, self.shard_size = Path(out_dir), int(shard_size)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shards: list[dict] = []
        self._latents: list[torch.Tensor] = []
        self._indices: list[torch.Tensor] = []
        self.latent_shape: list[int] | None = None

    def add(self, latents: torch.Tensor, caption_index: torch.Tensor) -> None:
        """Queue ``latents [b, ...]`` with their caption indices ``[b]``, writing every full shard."""
        shape = list(latents.shape[1:])
        if self.latent_shape not in (None, shape):
            raise ValueError(f"latents must all have shape {self.latent_shape}, got {shape}")
        self.latent_shape = shape
        self._latents.append(latents)
        self._indices.append(caption_index.to(torch.long))
        while sum(x.shape[0] for x in self._latents) >= self.shard_size:
            self._write_shard(self.shard_size)

    def _write_shard(self, count: int) -> None:
        latents, indices = torch.cat(self._latents), torch.cat(self._indices)
        name = f"latents-{len(self.shards):05d}.safetensors"
        save_file({"latent": latents[:count].contiguous(), "caption_index": indices[:count].contiguous()},
                  str(self.out_dir / name))
        self.shards.append({"file": name, "num_samples": int(count)})
        self._latents, self._indices = [latents[count:]], [indices[count:]]

    def finish(self, captions: list[str], text: TextEmbedding, attributes: dict, meta: dict) -> Path:
        """Flush the last shard, write ``text.safetensors`` and (last, atomically) ``index.json``."""
        rest = sum(x.shape[0] for x in self._latents)
        if rest:
            self._write_shard(rest)
        save_file({"tokens": text.tokens.contiguous(), "mask": text.mask.contiguous(),
                   "pooled": text.pooled.contiguous()}, str(self.out_dir / TEXT_FILE))
        index = {"format": FORMAT, "version": 1, "num_samples": sum(s["num_samples"] for s in self.shards),
                 "latent_shape": self.latent_shape, "shards": self.shards, "captions": captions,
                 "unconditional_index": UNCONDITIONAL_INDEX, "attributes": attributes, **meta}
        tmp = self.out_dir / (INDEX_FILE + ".tmp")
        tmp.write_text(json.dumps(index, indent=1, default=json_default))
        tmp.replace(self.out_dir / INDEX_FILE)
        return self.out_dir


def write_cache(examples: Iterable[Example], vae, text_encoder, out_dir: str | os.PathLike, mel=None,
                batch_size: int = 16, shard_size: int = 1024, clip_samples: int | None = None,
                device: torch.device | str = "cpu", meta: dict | None = None) -> Path:
    """Encode examples straight to disk shard by shard (memory stays ~one shard); returns ``out_dir``."""
    mel = default_mel(vae) if mel is None else mel
    writer, table, attrs = CacheWriter(out_dir, shard_size), CaptionTable(), []
    for lat, caps, att in encoded_batches(examples, vae, mel, batch_size, clip_samples, device):
        writer.add(lat, torch.tensor([table.index(c) for c in caps], dtype=torch.long))
        attrs += att
    if writer.latent_shape is None:
        raise ValueError("examples must yield at least one (wave, caption, attrs) item")
    text = encode_caption_table(table.captions, text_encoder)
    meta = {"text_encoder": text_encoder_meta(text_encoder), "mel": mel_meta(mel), **(meta or {})}
    return writer.finish(table.captions, text, attribute_columns(attrs), meta)


def read_index(cache_dir: str | os.PathLike) -> dict:
    """``index.json`` of a cache folder, checked for format."""
    path = Path(cache_dir) / INDEX_FILE
    if not path.is_file():
        raise ValueError(f"cache_dir {cache_dir} has no {INDEX_FILE} (not a latent cache, or not finished)")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"cache_dir {cache_dir}: {INDEX_FILE} is not a {FORMAT} index")
    return index


class BatchedCache(Dataset):
    """A LatentCacheDataset seen by the DataLoader through ``__getitems__`` (a batch per call, no collation)."""

    def __init__(self, dataset: LatentCacheDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.dataset.get_batch(indices)


def whole_batch(batch):
    """Collate for datasets whose ``__getitems__`` already returns a batched dict (pass as ``collate_fn``)."""
    return batch


class LatentCacheDataset(Dataset):
    """Reads a cache folder back: item ``i`` → dict of tensors ``latent [...]``, ``tokens [L, D]``, ``mask [L]``,
    ``pooled [P]``, ``caption_index []``. ``in_memory=False`` reads latents lazily from the shards."""

    def __init__(self, cache_dir: str | os.PathLike, in_memory: bool = True):
        self.cache_dir = Path(cache_dir)
        self.index = read_index(cache_dir)
        self.captions: list[str] = self.index["captions"]
        self.attributes: dict[str, list] = self.index.get("attributes", {})
        table = load_file(str(self.cache_dir / TEXT_FILE))
        self.text = TextEmbedding(table["tokens"], table["mask"], table["pooled"])
        counts = [s["num_samples"] for s in self.index["shards"]]
        self._starts = np.cumsum([0] + counts)
        self._files = [str(self.cache_dir / s["file"]) for s in self.index["shards"]]
        self.caption_index = torch.cat([load_file(f)["caption_index"] for f in self._files])
        self.latents = torch.cat([load_file(f)["latent"] for f in self._files]) if in_memory else None
        self._handles: dict[int, object] = {}

    def __getstate__(self) -> dict:
        """Pickle without open shard handles (DataLoader workers reopen them)."""
        return {**self.__dict__, "_handles": {}}

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def unconditional(self) -> TextEmbedding:
        """The embedding of ``""`` (CFG's null condition): ``[1, L, D]``."""
        i = slice(UNCONDITIONAL_INDEX, UNCONDITIONAL_INDEX + 1)
        return TextEmbedding(self.text.tokens[i], self.text.mask[i], self.text.pooled[i])

    def latent(self, index: int) -> torch.Tensor:
        """Latent of sample ``index`` (from memory, or a slice read from its shard)."""
        if self.latents is not None:
            return self.latents[index]
        shard = int(np.searchsorted(self._starts, index, side="right") - 1)
        offset = index - int(self._starts[shard])
        if shard not in self._handles:
            self._handles[shard] = safe_open(self._files[shard], framework="pt")
        return self._handles[shard].get_slice("latent")[offset : offset + 1][0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        c = self.caption_index[index]
        return {"latent": self.latent(index), "tokens": self.text.tokens[c], "mask": self.text.mask[c],
                "pooled": self.text.pooled[c], "caption_index": c}

    def batched(self) -> BatchedCache:
        """A view whose DataLoader batches are built by fancy indexing (use with ``collate_fn=whole_batch``)."""
        return BatchedCache(self)

    def get_batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """A whole batch by fancy indexing: the same tensors as stacking ``self[i]``."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.latents is None:
            latents = torch.stack([self.latent(int(i)) for i in idx])
        else:
            latents = self.latents[idx]
        c = self.caption_index[idx]
        return {"latent": latents, "tokens": self.text.tokens[c], "mask": self.text.mask[c],
                "pooled": self.text.pooled[c], "caption_index": c}

    def to_cache(self) -> LatentCache:
        """Everything as an in-memory LatentCache."""
        latents = self.latents if self.latents is not None else torch.stack([self.latent(i) for i in range(len(self))])
        meta = {k: v for k, v in self.index.items() if k in ("text_encoder", "mel", "source", "vae")}
        return LatentCache(latents, self.caption_index, self.captions, self.text, self.attributes, meta)


# ---------------------------------------------------------------- front-end, sources and the command line


def default_mel(vae=None):
    """The log-mel front-end the VAE was trained on (``vae.config.mel``), else AudioLDM's default settings."""
    from soundctm.audio.mel import MelConfig, MelSpectrogram

    config = getattr(getattr(vae, "config", None), "mel", None)
    return MelSpectrogram(config if isinstance(config, MelConfig) else MelConfig())


def mel_meta(mel) -> dict:
    """The mel settings as a dict, if the front-end exposes a config with ``to_dict``."""
    config = getattr(mel, "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else {}


def manifest_examples(path: str, sample_rate: int, clip_seconds: float, n: int | None):
    """``(wave, caption, attrs)`` of a manifest's readable entries (first ``n`` if given), and its SkipReport."""
    from soundctm.data.manifest import ManifestDataset

    dataset = ManifestDataset(path, sample_rate=sample_rate, clip_seconds=clip_seconds)
    return islice(dataset.examples(), n), dataset.skipped


def synthcaps_examples(n: int, seed: int, split: str, sample_rate: int, clip_seconds: float):
    """``(wave, caption, attrs)`` of ``n`` SynthCaps clips (nothing is skipped: None report)."""
    from soundctm.data.synthcaps import SynthCaps

    return iter(SynthCaps(n, seed, split, sr=sample_rate, duration_s=clip_seconds)), None


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="soundctm cache", description="Pre-encode a dataset into VAE latents + text embeddings.")
    p.add_argument("--data", required=True, help="a manifest (.csv/.jsonl) or 'synthcaps'")
    p.add_argument("--vae", required=True, help="AudioVAE folder (config.json + safetensors)")
    p.add_argument("--text-encoder", default="minilm", help="text encoder name (minilm, t5, flan-t5, clap)")
    p.add_argument("--text-encoder-path", default=None, help="local folder of the text encoder (t5/clap)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=None, help="number of clips (SynthCaps: default 1000)")
    p.add_argument("--seed", type=int, default=0, help="SynthCaps seed")
    p.add_argument("--split", default="train", help="SynthCaps split")
    p.add_argument("--clip-seconds", type=float, default=2.0, help="clip length in s (cropped or padded)")
    p.add_argument("--batch-size", type=int, default=16, help="clips encoded per VAE batch")
    p.add_argument("--shard-size", type=int, default=1024, help="samples per safetensors shard")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing cache in --out")
    return p


def check_args(args) -> None:
    """Validate ranges and paths before any model is loaded."""
    if args.n is not None and args.n < 1:
        raise CliError(f"--n must be >= 1, got {args.n}")
    if args.clip_seconds <= 0:
        raise CliError(f"--clip-seconds must be > 0, got {args.clip_seconds}")
    if args.batch_size < 1 or args.shard_size < 1:
        raise CliError("--batch-size and --shard-size must be >= 1")
    if args.data != "synthcaps" and not Path(args.data).is_file():
        raise CliError(f"--data must be 'synthcaps' or an existing manifest file, got {args.data}")
    if not Path(args.vae).is_dir():
        raise CliError(f"--vae must be an AudioVAE folder, got {args.vae}")
    if (Path(args.out) / INDEX_FILE).exists() and not args.overwrite:
        raise CliError(f"--out {args.out} already holds a cache; pass --overwrite to replace it")
    check_device(args.device, "--device")


def load_parts(args):
    """(vae, mel, text encoder) on ``args.device``, from the local folders named on the command line."""
    from soundctm.audio.text import build_text_encoder
    from soundctm.audio.vae import AudioVAE

    vae = AudioVAE.from_pretrained(args.vae).to(args.device).eval()
    text = build_text_encoder(args.text_encoder, args.text_encoder_path, device=args.device)
    return vae, default_mel(vae).to(args.device), text


def source_examples(args, sample_rate: int):
    """The examples named by ``--data`` and the report of skipped entries (manifests only)."""
    if args.data == "synthcaps":
        return synthcaps_examples(args.n or 1000, args.seed, args.split, sample_rate, args.clip_seconds)
    return manifest_examples(args.data, sample_rate, args.clip_seconds, args.n)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        check_args(args)
        vae, mel, text = load_parts(args)
        examples, skipped = source_examples(args, mel.config.sample_rate)
    except SystemExit as stop:  # --help
        return int(stop.code or 0)
    except (CliError, ValueError, OSError, ImportError) as err:
        return report("soundctm cache", err)
    clip_samples = int(round(args.clip_seconds * mel.config.sample_rate))
    meta = {"source": {"data": args.data, "n": args.n, "seed": args.seed, "split": args.split},
            "vae": str(args.vae), "clip_samples": clip_samples, "skipped": skipped}
    with one_line_warnings("soundctm cache"):
        out = write_cache(examples, vae, text, args.out, mel, args.batch_size, args.shard_size, clip_samples,
                          args.device, meta)
    index = read_index(out)
    print(f"wrote {index['num_samples']} samples, {len(index['captions']) - 1} unique captions, "
          f"{len(index['shards'])} shard(s) of latents {index['latent_shape']} to {out}"
          + (f"; {skipped.summary()}" if skipped else ""))
    return 0
