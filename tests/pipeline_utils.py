"""The tests' tiny random SoundCTM pipeline: ``soundctm.debug`` (seconds to build, real MiniLM text encoder)."""

from soundctm.debug import debug_pipeline as make_pipeline
from soundctm.debug import debug_text_encoder as text_encoder

__all__ = ["make_pipeline", "text_encoder"]
