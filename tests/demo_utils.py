"""One running demo server per test process (tiny random pipeline on a free loopback port)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline_utils import make_pipeline

from soundctm.demo import build_app, launch

TEACHER_STEPS = 4  # the comparison's teacher run, kept short for tests
CONCURRENCY = 2


@dataclass
class DemoServer:
    pipe: object
    app: object
    url: str
    model_dir: Path


def free_port() -> int:
    """A TCP port nobody listens on right now (bind to port 0 and let the kernel choose)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_pipeline(model_dir: Path):
    """The tiny random pipeline saved to ``model_dir``, or loaded from it when it already holds a model."""
    if model_dir.is_dir():
        from soundctm.pipeline import SoundCTM

        pipe = SoundCTM.from_pretrained(model_dir)
    else:
        pipe = make_pipeline(model_dir)
    pipe.config = replace(pipe.config, teacher_steps=TEACHER_STEPS)
    return pipe


@functools.cache
def demo_server() -> DemoServer:
    """Launch the demo in this process once (closed at exit); the app is the one ``soundctm demo`` serves.

    $SOUNDCTM_DEMO_MODEL swaps the tiny random model for a real one (used to take docs/demo.png).
    """
    tmp = Path(tempfile.mkdtemp(prefix="soundctm-demo-test-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    model_dir = Path(os.environ.get("SOUNDCTM_DEMO_MODEL") or tmp / "model")
    pipe = tiny_pipeline(model_dir)
    name = model_dir.name if os.environ.get("SOUNDCTM_DEMO_MODEL") else "tiny random (untrained) test model"
    app = build_app(pipe, model_name=name, concurrency_limit=CONCURRENCY)
    _, url, _ = launch(app, "127.0.0.1", free_port(), block=False)
    atexit.register(app.close)
    return DemoServer(pipe, app, url, model_dir)
