"""Seeding: one seed at start-up, then a fresh seed per micro-step so every random draw is a function of
(seed, micro-step, rank). Resume is then exact without restoring any pickled RNG state."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, micro_step: int, rank: int, phase: int = 0) -> int:
    """A well-mixed 63-bit seed for micro-step ``micro_step`` of optimizer group ``phase`` on process ``rank``
    (NumPy SeedSequence)."""
    entropy = [seed, micro_step, rank] + ([phase] if phase else [])
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def seed_micro_step(seed: int, micro_step: int, rank: int, device: torch.device, phase: int = 0) -> torch.Generator:
    """Reseed the global generators this process uses (Python, NumPy, torch CPU and ``device``) for this
    micro-step (of optimizer group ``phase``); return a matching generator on ``device``."""
    s = step_seed(seed, micro_step, rank, phase)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.default_generator.manual_seed(s)  # torch.manual_seed would also queue lazy seeds for idle backends
    if device.type == "cuda":
        torch.cuda.manual_seed(s)  # the current device
    return torch.Generator(device=device).manual_seed(s)
