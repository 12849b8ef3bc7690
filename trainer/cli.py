"""`trainer`: the command line on the workstation. Each sub-command lives in `trainer/commands/<name>.py`.

Sub-commands import TensorFlow only when they run, so `trainer metadata` works without it.
"""
from __future__ import annotations

import sys
from typing import Sequence

from device.subcommands import run_cli

COMMANDS = ("train", "export", "evaluate", "compare", "review", "metadata")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("trainer", "Train and export image classifiers for bloomkit.", "trainer.commands", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
