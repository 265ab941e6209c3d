"""AudioCaps-style manifests of a user's own audio: CSV ``file_name,caption`` or JSONL ``location,captions``.

Paths are relative to the manifest's folder (absolute paths are kept). Extra CSV columns / JSON keys are kept as
per-entry attributes. A JSONL ``captions`` value may be one string or a list; each non-empty caption becomes one
(file, caption) entry. Bad audio (missing, unreadable, 0 samples, silent) is skipped with a counted warning, so a
long run never stops on one bad file: a cheap header scan at construction, full decode checks when loading.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from soundctm.audio.io import AudioLoadError, crop_or_pad, is_silent, load_audio

CROPS = ("start", "center", "random")


@dataclass(frozen=True)
class ManifestEntry:
    """One (audio file, caption) pair and the manifest's other columns for it."""

    path: Path
    caption: str
    attrs: dict = field(default_factory=dict)


@dataclass
class SkipReport:
    """How many manifest entries were skipped, by reason."""

    missing: int = 0
    unreadable: int = 0
    empty: int = 0
    silent: int = 0
    empty_caption: int = 0

    @property
    def total(self) -> int:
        return sum(asdict(self).values())

    def summary(self) -> str:
        """e.g. ``'3 skipped (missing 1, silent 2)'``."""
        parts = [f"{k.replace('_', ' ')} {v}" for k, v in asdict(self).items() if v]
        return f"{self.total} skipped ({', '.join(parts)})" if parts else "0 skipped"


def _resolve(base: Path, location: str) -> Path:
    """``location`` relative to the manifest folder ``base`` (absolute paths unchanged)."""
    path = Path(os.path.expanduser(location))
    return path if path.is_absolute() else base / path


def read_csv_manifest(path: Path) -> tuple[list[ManifestEntry], int]:
    """Entries of a ``file_name,caption[,...]`` CSV and the number of rows with an empty caption."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"file_name", "caption"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"path {path}: CSV manifest needs columns file_name,caption; missing {sorted(missing)}")
        rows = list(reader)
    entries, n_empty = [], 0
    for row in rows:
        caption = (row.pop("caption") or "").strip()
        location = (row.pop("file_name") or "").strip()
        if not caption:
            n_empty += 1
            continue
        entries.append(ManifestEntry(_resolve(path.parent, location), caption, row))
    return entries, n_empty


def _json_captions(record: dict, where: str) -> list[str]:
    """The ``captions`` field of a JSONL record as a list of strings."""
    captions = record["captions"]
    captions = [captions] if isinstance(captions, str) else captions
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise ValueError(f"{where}: captions must be a string or a list of strings, got {record['captions']!r}")
    return [c.strip() for c in captions]


def read_jsonl_manifest(path: Path) -> tuple[list[ManifestEntry], int]:
    """Entries of a JSONL manifest (one ``{"location": ..., "captions": str | [str]}`` per line), empty count."""
    entries, n_empty = [], 0
    with open(path, encoding="utf-8") as f:
        lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    for n, line in lines:
        where = f"path {path} line {n}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err.msg})") from err
        if not isinstance(record, dict) or not {"location", "captions"} <= set(record):
            raise ValueError(f"{where}: each JSONL record needs keys 'location' and 'captions'")
        attrs = {k: v for k, v in record.items() if k not in ("location", "captions")}
        captions = _json_captions(record, where)
        n_empty += sum(not c for c in captions) + (not captions)
        location = _resolve(path.parent, str(record["location"]))
        entries += [ManifestEntry(location, c, attrs) for c in captions if c]
    return entries, n_empty


MANIFEST_READERS = {".csv": read_csv_manifest, ".jsonl": read_jsonl_manifest, ".json": read_jsonl_manifest}


def read_manifest(path: str | os.PathLike) -> tuple[list[ManifestEntry], int]:
    """Entries of a CSV or JSONL manifest (by file suffix) and how many captions were empty."""
    path = Path(path)
    if path.suffix.lower() not in MANIFEST_READERS:
        raise ValueError(f"path must end in one of {sorted(MANIFEST_READERS)}, got {path}")
    if not path.is_file():
        raise ValueError(f"path: manifest file not found: {path}")
    return MANIFEST_READERS[path.suffix.lower()](path)


def probe_audio(path: Path) -> str | None:
    """Cheap header check: None if the file looks usable, else the SkipReport reason."""
    if not path.is_file():
        return "missing"
    try:
        frames = sf.info(str(path)).frames
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return "unreadable"
    return "empty" if frames == 0 else None


class ManifestDataset(Dataset):
    """``(wave float32 [T], caption)`` pairs from a manifest, mono at ``sample_rate``, cropped/padded to the clip.

    ``caption_dropout`` = p returns ``""`` (the unconditional caption: encode batches with ``allow_empty=True``)
    with probability p; the draw and a random
    crop use a generator seeded by ``(seed, epoch, index)``, so an item is reproducible (see ``set_epoch``).
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int = 16000, clip_seconds: float = 2.0,
                 caption_dropout: float = 0.0, seed: int = 0, crop: str = "start", silence_db: float | None = -60.0):
        if not clip_seconds > 0:
            raise ValueError(f"clip_seconds must be > 0, got {clip_seconds}")
        if not 0.0 <= caption_dropout <= 1.0:
            raise ValueError(f"caption_dropout must be in [0, 1], got {caption_dropout}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        self.path, self.sample_rate, self.seed, self.epoch = Path(path), int(sample_rate), int(seed), 0
        self.clip_samples = int(round(clip_seconds * sample_rate))
        self.caption_dropout, self.crop, self.silence_db = float(caption_dropout), crop, silence_db
        entries, n_empty = read_manifest(path)
        self.skipped = SkipReport(empty_caption=n_empty)
        self.entries = self._scan(entries)
        self._bad: set[int] = set()
        if self.skipped.total:
            warnings.warn(f"manifest {self.path}: {self.skipped.summary()} of {len(entries) + n_empty} entries",
                          stacklevel=2)
        if not self.entries:
            raise ValueError(f"path {self.path}: no usable entries ({self.skipped.summary()})")

    def _scan(self, entries: list[ManifestEntry]) -> list[ManifestEntry]:
        """Drop entries whose file fails ``probe_audio`` (each file probed once), counting reasons."""
        reasons = {p: probe_audio(p) for p in dict.fromkeys(e.path for e in entries)}
        for entry in entries:
            if reasons[entry.path]:
                setattr(self.skipped, reasons[entry.path], getattr(self.skipped, reasons[entry.path]) + 1)
        return [e for e in entries if reasons[e.path] is None]

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Change the epoch, and with it the random crops and caption dropouts."""
        self.epoch = int(epoch)

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        """Generator of one item's draws: stream 0 = crop offset, 1 = caption dropout."""
        return np.random.default_rng([self.seed, self.epoch, index, stream])

    def _mark_bad(self, index: int, reason: str, detail: str) -> None:
        """Count a file found bad at load time (once per entry) and warn."""
        if index not in self._bad:
            self._bad.add(index)
            setattr(self.skipped, reason, getattr(self.skipped, reason) + 1)
        warnings.warn(f"skipping {self.entries[index].path}: {detail} (so far {self.skipped.summary()})",
                      stacklevel=3)

    def load_wave(self, index: int) -> np.ndarray | None:
        """Full mono clip ``[T']`` of entry ``index``, or None (counted) if it cannot be decoded or is silent."""
        try:
            wave = load_audio(self.entries[index].path, self.sample_rate, mono=True)
        except AudioLoadError as err:
            self._mark_bad(index, "empty" if "empty" in str(err) else "unreadable", str(err))
            return None
        if wave.shape[0] == 0:
            self._mark_bad(index, "empty", "0 samples")
            return None
        if self.silence_db is not None and is_silent(wave, self.silence_db):
            self._mark_bad(index, "silent", f"RMS below {self.silence_db} dBFS")
            return None
        return wave

    def fit_clip(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Crop (start / center / random offset) or zero-pad ``[T']`` to ``clip_samples``."""
        extra = max(wave.shape[0] - self.clip_samples, 0)
        offset = {"start": 0, "center": extra // 2}.get(self.crop)
        offset = int(rng.integers(0, extra + 1)) if offset is None else offset
        return crop_or_pad(wave, self.clip_samples, offset)

    def example(self, index: int) -> tuple[np.ndarray, str, dict] | None:
        """``(clip [T], caption, attrs)`` of entry ``index`` without caption dropout, or None if the file is bad."""
        wave = None if index in self._bad else self.load_wave(index)
        if wave is None:
            return None
        entry = self.entries[index]
        return self.fit_clip(wave, self._rng(index, 0)), entry.caption, entry.attrs

    def examples(self) -> Iterator[tuple[np.ndarray, str, dict]]:
        """Every readable entry once, in manifest order, as ``(clip [T], caption, attrs)``; bad files skipped."""
        for index in range(len(self)):
            item = self.example(index)
            if item is not None:
                yield item

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        """``(wave [T], caption)``; a bad file is replaced by the next readable entry (wrapping around)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} entries")
        index %= len(self)
        for step in range(len(self)):
            item = self.example((index + step) % len(self))
            if item is not None:
                wave, caption, _ = item
                drop = self._rng(index, 1).random() < self.caption_dropout
                return torch.from_numpy(wave), "" if drop else caption
        raise RuntimeError(f"manifest {self.path}: no readable audio left ({self.skipped.summary()})")
