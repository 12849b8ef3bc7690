"""One command-line shape for `device` and `trainer`: lazy sub-command modules, one-line user errors."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

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
    try:
        return args.func(args)
    except UserError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `… | head` closed the pipe: stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
