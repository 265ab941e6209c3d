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


def step_seed(seed: int, micro_step: int, rank: int) -> int:
    """A well-mixed 63-bit seed for micro-step ``micro_step`` on process ``rank`` (NumPy SeedSequence)."""
    state = np.random.SeedSequence([seed, micro_step, rank]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def seed_micro_step(seed: int, micro_step: int, rank: int, device: torch.device) -> torch.Generator:
    """Reseed all global generators for this micro-step and return a matching generator on ``device``."""
    s = step_seed(seed, micro_step, rank)
    seed_everything(s)
    return torch.Generator(device=device).manual_seed(s)
