"""One running demo server per test process (tiny random pipeline on a free loopback port)."""

from __future__ import annotations

import atexit
import functools
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
    pipe = make_pipeline(model_dir)
    pipe.config = replace(pipe.config, teacher_steps=TEACHER_STEPS)
    return pipe


@functools.cache
def demo_server() -> DemoServer:
    """Launch the demo in this process once (closed at exit); the app is the one ``soundctm demo`` serves."""
    model_dir = Path(tempfile.mkdtemp(prefix="soundctm-demo-test-")) / "model"
    pipe = tiny_pipeline(model_dir)
    app = build_app(pipe, model_name="tiny-random", concurrency_limit=CONCURRENCY)
    _, url, _ = launch(app, "127.0.0.1", free_port(), block=False)
    atexit.register(shutil.rmtree, model_dir.parent, ignore_errors=True)
    atexit.register(app.close)
    return DemoServer(pipe, app, url, model_dir)
