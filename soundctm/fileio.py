"""Small file helpers shared by the recipes, benchmarks and CLIs: result names and atomic single-file writes.

- ``with_extension(out, ".md")``: ``--out`` stems become ``stem.md`` / ``stem.json`` / ``stem.png``. A stem with a dot
  in it (``goals_nu1.5_seed8``) keeps it; ``Path.with_suffix`` would cut it at ``.5_seed8`` so that two runs
  wrote the same file.
- ``atomic_path(path)``: a temporary name beside ``path`` for a writer that does not read the format from the
  name (``save_file``, ``write_text``; ``savefig`` would need ``format=``), renamed
  over ``path`` only when the block finishes; on an error the temporary file is removed and ``path`` is left as
  it was. A reader never sees half a file. (Checkpoint *folders* have their own protocol in
  ``soundctm.train.checkpoint``.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

RESULT_EXTENSIONS = (".md", ".json", ".png")


def with_extension(out: str | os.PathLike, ext: str) -> Path:
    """``out`` with ``ext`` appended; a name already ending in one of ``RESULT_EXTENSIONS`` has that replaced."""
    if not ext.startswith("."):
        raise ValueError(f"ext must start with a dot, got {ext!r}")
    out = Path(out)
    if out.suffix in RESULT_EXTENSIONS:
        out = out.with_suffix("")
    return out.with_name(out.name + ext)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder (created if missing); on success rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file for {str(path)!r}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see ``atomic_path``); returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
