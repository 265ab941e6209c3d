"""Run logging: scalars to tensorboard + ``metrics.jsonl``, audio/images for sample hooks, throughput accounting.

Only the main process writes; on other processes `RunLogger` methods do nothing.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


class RunLogger:
    """Writes scalars (tensorboard + one JSON line per log step) and media into ``log_dir``."""

    def __init__(self, log_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.log_dir, self.enabled = Path(log_dir), enabled
        self.writer = None
        self.last: dict[str, float] = {}
        if enabled:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.log_dir / "tensorboard"))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Log ``{name: value}`` at ``step``."""
        if not self.enabled:
            return
        self.last = {**self.last, **values}
        with open(self.log_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def audio(self, tag: str, wave: torch.Tensor | np.ndarray, sample_rate: int, step: int) -> None:
        """Log a mono waveform [T] in [-1, 1] (tensorboard only)."""
        if self.enabled and self.writer is not None:
            wave = torch.as_tensor(wave, dtype=torch.float32).reshape(1, -1).clamp(-1, 1)
            self.writer.add_audio(tag, wave, step, sample_rate=sample_rate)

    def image(self, tag: str, image: torch.Tensor | np.ndarray, step: int) -> None:
        """Log an image [H, W] or [C, H, W] with values in [0, 1] (tensorboard only)."""
        if self.enabled and self.writer is not None:
            image = torch.as_tensor(image, dtype=torch.float32)
            image = image[None] if image.ndim == 2 else image
            self.writer.add_image(tag, image.clamp(0, 1), step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_metrics(log_dir: str | Path) -> list[dict[str, Any]]:
    """All rows of ``<log_dir>/metrics.jsonl`` (empty list if none)."""
    path = Path(log_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@dataclass
class ThroughputMeter:
    """Wall-clock accounting over a logging window: steps/s and the share of time spent waiting for data."""

    window_start: float = field(default_factory=time.perf_counter)
    data_s: float = 0.0
    steps: int = 0
    samples: int = 0

    def add_data_wait(self, seconds: float) -> None:
        self.data_s += seconds

    def add_step(self, samples: int) -> None:
        self.steps += 1
        self.samples += samples

    @contextlib.contextmanager
    def excluded(self):
        """Time spent inside this block (samples, checkpoints) is not charged to the window."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.window_start += time.perf_counter() - start

    def report(self) -> dict[str, float]:
        """``{"perf/steps_per_s", "perf/samples_per_s", "perf/data_wait_frac"}`` since the last report; resets."""
        now = time.perf_counter()
        elapsed = max(now - self.window_start, 1e-12)
        out = {
            "perf/steps_per_s": self.steps / elapsed,
            "perf/samples_per_s": self.samples / elapsed,
            "perf/data_wait_frac": min(self.data_s / elapsed, 1.0),
        }
        self.window_start, self.data_s, self.steps, self.samples = now, 0.0, 0, 0
        return out
