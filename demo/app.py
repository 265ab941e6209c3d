"""``python -m demo.app [--model DIR] [--host 127.0.0.1] [--port P]``: start the gradio demo.

A thin entry point; the page and its handlers live in ``soundctm.demo`` so they ship with the package.
"""

import sys

from soundctm.demo import build_app, main

__all__ = ["build_app", "main"]

if __name__ == "__main__":
    sys.exit(main())
