"""How every ``soundctm`` command talks to a user: a bad argument is one line naming it (exit code 2), a warning
is one line, never a traceback.

    p = Parser(prog="soundctm x")           # argparse that raises CliError instead of exiting
    try: ... except (CliError, ValueError) as err: return report("soundctm x", err)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings


class CliError(Exception):
    """A bad command line: reported as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors raise ``CliError`` (``--help`` still prints and exits 0)."""

    def error(self, message):
        raise CliError(message)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` that shows every option's default (unless None: its help says what then) and keeps the
    description's line breaks."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__


def report(prog: str, err: BaseException) -> int:
    """Print ``<prog>: error: <first line of err>`` on stderr; return the exit code 2."""
    print(f"{prog}: error: {first_line(err)}", file=sys.stderr)
    return 2


@contextlib.contextmanager
def one_line_warnings(prog: str):
    """Inside: each warning is printed once as ``<prog>: warning: <message>`` on stderr (no file or source line)."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {first_line(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield
