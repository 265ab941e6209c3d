"""SynthCaps: an embedded, procedurally synthesised, captioned sound dataset with ground-truth attributes.

A clip is fully described by an attribute dict (schema in `VOCABULARY` and `sample_attributes`); `synthesize`
renders it (soundctm.data.synthcaps_sounds), `make_caption` describes it (soundctm.data.synthcaps_captions)
and `soundctm.metrics.synthcaps_judge.judge` checks audio against it. Everything is deterministic by
(seed, split, index). Splits: `train`; `heldout` (same distribution, other seeds); `heldout_combo` (attribute
combinations listed in HELDOUT_COMBOS, never produced for train/heldout).

CLI: ``soundctm synthcaps --out DIR --n N --seed S [--split train|heldout|heldout_combo|all] [--workers K]``
writes DIR/<split>/NNNNNN.wav (16-bit PCM) and DIR/<split>.csv (file_name relative to DIR).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundctm.cli_errors import CliError, Parser, report
from soundctm.data.synthcaps_captions import make_caption
from soundctm.data.synthcaps_sounds import synthesize

SOURCES = ("beep", "buzzer", "bell", "pluck", "drum", "knock", "bird", "siren", "hiss", "rumble", "rain")
PITCHED = ("beep", "buzzer", "bell", "pluck")
COUNTED = ("beep", "buzzer", "bell", "pluck", "drum", "knock", "bird")
SWEPT = ("siren",)
CONTINUOUS = ("siren", "hiss", "rumble", "rain")
SECOND_SOURCES = ("hiss", "rumble", "rain")
PITCH_RANGES_HZ = {"low": (130.0, 240.0), "medium": (400.0, 700.0), "high": (1100.0, 2600.0)}
LOUDNESS_RANGES_DB = {"quiet": (-42.0, -38.0), "loud": (-24.0, -20.0)}
SIREN_LOW_HZ, SIREN_RATIO = (400.0, 600.0), (2.2, 3.0)
COUNTS = (1, 2, 3)
P_SECOND, P_BACKGROUND, P_REVERB, P_FADE = 0.15, 0.15, 0.2, 0.4
SPLITS = ("train", "heldout", "heldout_combo")
SPLIT_CODE = {"train": 0, "heldout": 1, "heldout_combo": 2}
DEFAULT_SR, DEFAULT_DURATION_S = 16000, 2.0

VOCABULARY: dict[str, tuple] = {
    "source": SOURCES,
    "pitch": ("low", "medium", "high", None),
    "count": (1, 2, 3, None),
    "sweep": ("rising", "falling", None),
    "loudness": ("quiet", "loud"),
    "second_source": (*SECOND_SOURCES, None),
    "background": (False, True),
    "reverb": (False, True),
    "fade": ("in", "out", None),
}

# Attribute combinations never produced for train / heldout (a clip matching any pattern is heldout_combo).
HELDOUT_COMBOS: tuple[dict, ...] = (
    {"source": "beep", "pitch": "high", "count": 3},
    {"source": "buzzer", "pitch": "low", "count": 2},
    {"source": "bell", "pitch": "medium", "count": 1},
    {"source": "pluck", "pitch": "high", "count": 2},
    {"source": "pluck", "pitch": "low", "count": 3},
    {"source": "drum", "count": 2},
    {"source": "bird", "count": 3},
    {"source": "siren", "sweep": "falling", "loudness": "quiet"},
)


def is_heldout_combo(attrs: dict) -> bool:
    """Whether attrs match one of HELDOUT_COMBOS (a pure function of the attributes)."""
    return any(all(attrs.get(k) == v for k, v in pattern.items()) for pattern in HELDOUT_COMBOS)


def split_of(attrs: dict) -> str:
    """'heldout_combo' for a held-out combination, else 'train' (heldout differs from train only by seed)."""
    return "heldout_combo" if is_heldout_combo(attrs) else "train"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    return split


def check_duration(duration_s: float) -> float:
    if not 1.5 <= duration_s <= 30.0:
        raise ValueError(f"duration_s: expected 1.5 <= duration_s <= 30, got {duration_s}")
    return float(duration_s)


def check_sr(sr: int) -> int:
    if not 8000 <= sr <= 48000:
        raise ValueError(f"sr: expected 8000 <= sr <= 48000, got {sr}")
    return int(sr)


def pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def sample_categories(rng: np.random.Generator, source: str) -> dict:
    """The categorical attributes of a clip of `source` (one draw; extras with their probabilities)."""
    second = pick(rng, [s for s in SECOND_SOURCES if s != source]) if rng.random() < P_SECOND else None
    return {
        "source": source,
        "pitch": pick(rng, ("low", "medium", "high")) if source in PITCHED else None,
        "count": pick(rng, COUNTS) if source in COUNTED else None,
        "sweep": pick(rng, ("rising", "falling")) if source in SWEPT else None,
        "loudness": pick(rng, ("quiet", "loud")),
        "second_source": second,
        "background": second is None and bool(rng.random() < P_BACKGROUND),
        "reverb": bool(rng.random() < P_REVERB),
        "fade": pick(rng, ("in", "out")) if source in CONTINUOUS and rng.random() < P_FADE else None,
    }


def sample_onsets(rng: np.random.Generator, count: int, duration_s: float) -> tuple[float, ...]:
    """Event onsets: first at 5-15 % of the clip, then every 22.5-30 % (>= 0.45 s apart at 2 s)."""
    first = rng.uniform(0.05, 0.15) * duration_s
    gaps = rng.uniform(0.225, 0.3, size=count - 1) * duration_s
    return tuple(round(float(t), 4) for t in first + np.concatenate([[0.0], np.cumsum(gaps)]))


def sample_numbers(rng: np.random.Generator, cats: dict, duration_s: float) -> dict:
    """Numeric ground truth for the categories: f0, level, onsets, siren end points."""
    lo, hi = PITCH_RANGES_HZ[cats["pitch"]] if cats["pitch"] else (0.0, 0.0)
    sweep_hz = None
    if cats["sweep"]:
        low, ratio = rng.uniform(*SIREN_LOW_HZ), rng.uniform(*SIREN_RATIO)
        sweep_hz = (round(low, 2), round(low * ratio, 2))[:: 1 if cats["sweep"] == "rising" else -1]
    return {
        "f0_hz": round(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), 2) if cats["pitch"] else None,
        "sweep_hz": sweep_hz,
        "level_db": round(float(rng.uniform(*LOUDNESS_RANGES_DB[cats["loudness"]])), 2),
        "onsets_s": sample_onsets(rng, cats["count"], duration_s) if cats["count"] else None,
        "duration_s": duration_s,
    }


def sample_attributes(rng: np.random.Generator, split: str = "train", duration_s: float = DEFAULT_DURATION_S) -> dict:
    """A random attribute dict of `split` (train/heldout exclude HELDOUT_COMBOS; heldout_combo draws one)."""
    check_split(split)
    duration_s = check_duration(duration_s)
    while True:
        if split == "heldout_combo":
            pattern = pick(rng, HELDOUT_COMBOS)
            cats = {**sample_categories(rng, pattern["source"]), **pattern}
        else:
            cats = sample_categories(rng, pick(rng, SOURCES))
        if (split == "heldout_combo") == is_heldout_combo(cats):
            return {**cats, **sample_numbers(rng, cats, duration_s)}


def clip_rngs(seed: int, split: str, index: int) -> tuple[np.random.Generator, ...]:
    """Independent generators (attributes, synthesis, caption) of clip `index` of (seed, split)."""
    root = np.random.SeedSequence(int(seed), spawn_key=(SPLIT_CODE[check_split(split)], int(index)))
    return tuple(np.random.default_rng(s) for s in root.spawn(3))


def make_clip(seed: int, split: str, index: int, sr: int = DEFAULT_SR, duration_s: float = DEFAULT_DURATION_S):
    """(wave float32 [T], caption, attrs) of clip `index` of (seed, split); deterministic."""
    rng_attrs, rng_wave, rng_text = clip_rngs(seed, split, index)
    attrs = sample_attributes(rng_attrs, split, duration_s)
    return synthesize(attrs, rng_wave, sr), make_caption(attrs, rng_text), attrs


@dataclass
class SynthCaps:
    """n clips of a split as a sequence of (wave [T] float32, caption, attrs); usable as a torch Dataset."""

    n: int
    seed: int = 0
    split: str = "train"
    sr: int = DEFAULT_SR
    duration_s: float = DEFAULT_DURATION_S

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n: expected n >= 1, got {self.n}")
        check_split(self.split)
        check_duration(self.duration_s)
        check_sr(self.sr)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} clips")
        return make_clip(self.seed, self.split, index % self.n, self.sr, self.duration_s)

    def captions(self) -> list[str]:
        """All captions (no synthesis)."""
        return [self.prompt(i)[0] for i in range(self.n)]

    def prompt(self, index: int) -> tuple[str, dict]:
        """(caption, attrs) of clip `index` without synthesising it."""
        rng_attrs, _, rng_text = clip_rngs(self.seed, self.split, index)
        attrs = sample_attributes(rng_attrs, self.split, self.duration_s)
        return make_caption(attrs, rng_text), attrs


def heldout_prompts(n: int, seed: int = 0, split: str = "heldout") -> list[tuple[str, dict]]:
    """n (caption, attrs) evaluation prompts of a held-out split ('heldout' or 'heldout_combo')."""
    if split == "train":
        raise ValueError("split: expected 'heldout' or 'heldout_combo', got 'train'")
    data = SynthCaps(n, seed, split)
    return [data.prompt(i) for i in range(n)]


def example_prompts(n: int = 8, seed: int = 0) -> list[str]:
    """A few captions for a demo (from the heldout split)."""
    return [caption for caption, _ in heldout_prompts(n, seed)]


# ---- manifest: AudioCaps-style CSV, file_name,caption first, then the attributes ----

ATTRIBUTE_COLUMNS = (*VOCABULARY, "f0_hz", "sweep_hz", "level_db", "onsets_s", "duration_s")
MANIFEST_COLUMNS = ("file_name", "caption", "split", "index", *ATTRIBUTE_COLUMNS)


def format_value(value) -> str:
    """CSV cell: '' for None, 0/1 for bools, ';'-joined tuples."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, tuple | list):
        return ";".join(str(v) for v in value)
    return str(value)


def parse_attributes(row: dict) -> dict:
    """Inverse of format_value on a manifest row: the attribute dict."""
    cell = {k: row[k] for k in ATTRIBUTE_COLUMNS}
    floats = lambda s: tuple(float(v) for v in s.split(";")) if s else None  # noqa: E731
    return {
        **{k: cell[k] or None for k in ("source", "pitch", "sweep", "loudness", "second_source", "fade")},
        "count": int(cell["count"]) if cell["count"] else None,
        "background": cell["background"] == "1",
        "reverb": cell["reverb"] == "1",
        "f0_hz": float(cell["f0_hz"]) if cell["f0_hz"] else None,
        "sweep_hz": floats(cell["sweep_hz"]),
        "level_db": float(cell["level_db"]),
        "onsets_s": floats(cell["onsets_s"]),
        "duration_s": float(cell["duration_s"]),
    }


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows of a SynthCaps CSV as dicts: file_name (absolute), caption, split, index, attrs."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        {
            "file_name": str(path.parent / row["file_name"]),
            "caption": row["caption"],
            "split": row["split"],
            "index": int(row["index"]),
            "attrs": parse_attributes(row),
        }
        for row in rows
    ]


def write_clip(job: tuple) -> list[str]:
    """Synthesise one clip, write its wav and return its manifest row (a worker task)."""
    import soundfile as sf

    out, seed, split, index, sr, duration_s = job
    wave, caption, attrs = make_clip(seed, split, index, sr, duration_s)
    file_name = f"{split}/{index:06d}.wav"
    sf.write(Path(out) / file_name, wave, sr, subtype="PCM_16", format="WAV")
    meta = {"file_name": file_name, "caption": caption, "split": split, "index": index, **attrs}
    return [format_value(meta[c]) for c in MANIFEST_COLUMNS]


def write_split(out: Path, n: int, seed: int, split: str, workers: int, sr: int, duration_s: float) -> Path:
    """Write n clips of a split to out/<split>/ and the manifest out/<split>.csv."""
    (out / split).mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), seed, split, i, sr, duration_s) for i in range(n)]
    if workers > 1:
        import multiprocessing

        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            rows = pool.map(write_clip, jobs, chunksize=max(1, min(256, n // (4 * workers))))
    else:
        rows = [write_clip(job) for job in jobs]
    manifest = out / f"{split}.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    return manifest


def split_sizes(split: str, n: int) -> dict[str, int]:
    """Clips per split for the CLI: 'all' = n train + n/10 of each held-out split."""
    if split == "all":
        return {"train": n, "heldout": max(1, n // 10), "heldout_combo": max(1, n // 10)}
    return {split: n}


def build_parser() -> Parser:
    p = Parser(prog="soundctm synthcaps", description="Synthesise the SynthCaps captioned sound dataset.")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--n", type=int, required=True, help="number of clips (with --split all: of train)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--split",
        default="train",
        choices=(*SPLITS, "all"),
        help="'all' writes n train clips and n/10 of each held-out split",
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--sr", type=int, default=DEFAULT_SR, help="sample rate (8000-48000)")
    p.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="clip length in s (1.5-30)")
    return p


def validate_args(args: argparse.Namespace) -> None:
    """Raise CliError naming the first bad argument."""
    if args.n < 1:
        raise CliError(f"--n: expected n >= 1, got {args.n}")
    if args.workers < 1:
        raise CliError(f"--workers: expected >= 1, got {args.workers}")
    if not 8000 <= args.sr <= 48000:
        raise CliError(f"--sr: expected 8000 <= sr <= 48000, got {args.sr}")
    if not 1.5 <= args.duration <= 30:
        raise CliError(f"--duration: expected 1.5 <= duration <= 30, got {args.duration}")
    try:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".synthcaps-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise CliError(f"--out: cannot write to {args.out!r} ({e.strerror or e})") from None


def main(argv: list[str] | None = None) -> int:
    """soundctm synthcaps entry point; returns an exit code (2 on bad input)."""
    try:
        args = build_parser().parse_args(argv)
        validate_args(args)
    except CliError as e:
        return report("soundctm synthcaps", e)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    for split, n in split_sizes(args.split, args.n).items():
        start = time.perf_counter()
        manifest = write_split(Path(args.out), n, args.seed, split, args.workers, args.sr, args.duration)
        print(f"wrote {n} clips to {manifest} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
