"""Which torch devices this machine has, and a check that names the argument when one is missing."""

from __future__ import annotations

import torch


def available_devices() -> list[str]:
    """The torch devices this machine can run on: ``cpu``, ``cuda:<i>`` per GPU, ``mps`` when present."""
    gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    mps = getattr(torch.backends, "mps", None)
    return ["cpu", *gpus, *(["mps"] if mps is not None and mps.is_available() else [])]


def check_device(device: str | torch.device, name: str = "device") -> torch.device:
    """``device`` as a torch.device when this machine has it; else a ValueError naming ``name`` and the choices."""
    available = available_devices()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    ok = dev is not None and (dev.type == "cpu" or str(dev) in available
                              or (dev.type == "cuda" and dev.index is None and "cuda:0" in available))
    if not ok:
        raise ValueError(f"{name} {str(device)!r} is not available on this machine; available: {', '.join(available)}")
    return dev
