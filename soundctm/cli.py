"""Command line: ``soundctm <command> ...``.

Each command lives in the module that owns it and exposes ``main(argv) -> int``; this file only dispatches,
so ``soundctm --help`` stays fast and modules are imported only when used.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("soundctm.pipeline_cli", "generate audio from text prompts"),
    "synthcaps": ("soundctm.data.synthcaps", "synthesise the SynthCaps captioned sound dataset"),
    "cache": ("soundctm.data.cache", "pre-encode a dataset into VAE latents + text embeddings"),
    "train": ("soundctm.train.cli", "train a model from a recipe in a source checkout's recipes/"),
    "eval": ("soundctm.metrics.cli", "evaluate a model: FD, attribute accuracy, CLAP score ..."),
    "demo": ("soundctm.demo", "start the gradio demo"),
}


def _usage() -> str:
    lines = ["usage: soundctm <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'soundctm <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from soundctm import __version__

        print(f"soundctm {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"soundctm: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
