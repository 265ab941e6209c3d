"""soundctm: text-to-sound generation with Consistency Trajectory Models.

Heavy parts (pipeline, transformers, diffusers) load lazily, so ``import soundctm.core`` stays torch-only.
"""

__version__ = "0.1.0"

_LAZY = {
    "SoundCTM": ("soundctm.pipeline", "SoundCTM"),
    "Audio": ("soundctm.pipeline", "Audio"),
    "generate": ("soundctm.pipeline", "generate"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'soundctm' has no attribute {name!r}")
