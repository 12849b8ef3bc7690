"""One command-line shape for `device` and `trainer`: lazy sub-command modules, one-line user errors."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from typing import Iterator, Sequence, TextIO

from device.errors import UserError


def run_cli(prog: str, description: str, package: str, commands: Sequence[str], argv: Sequence[str] | None) -> int:
    """Parse `argv`, run the chosen sub-command, and turn a `UserError` into one line and exit code 1.

    Each `package.<name>` module defines `register(subparsers)`, which adds its parser and sets
    `func(args) -> int`.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in commands:
        importlib.import_module(f"{package}.{name}").register(subparsers)
    args = parser.parse_args(argv)
    stdout, sys.stdout = sys.stdout, _CheckedOutput(sys.stdout)
    try:
        code = args.func(args)
        sys.stdout.flush()  # what is still buffered fails here, as one line, not at exit as a traceback
        return code
    except UserError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        _drop_unwritable(stdout)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `… | head` closed the pipe: stop quietly, as other command-line tools do
        _drop_unwritable(stdout)
        return 141
    finally:
        sys.stdout = stdout


class StandardOutputError(UserError):
    """Standard output cannot be written: a full disk behind `> file`, /dev/full."""


class _CheckedOutput:
    """Standard output whose failed writes are a one-line `StandardOutputError` (a closed pipe stays a
    `BrokenPipeError`, which ends the command quietly)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with self._checked():
            return self._stream.write(text)

    def flush(self) -> None:
        with self._checked():
            self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)

    @contextlib.contextmanager
    def _checked(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as error:
            raise StandardOutputError(f"cannot write standard output: {error.strerror or error}") from None


def _drop_unwritable(stdout: TextIO) -> None:
    """If standard output cannot take what is buffered for it, send that to /dev/null, so that Python's own
    flush at exit does not print a second error."""
    try:
        stdout.flush()
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
