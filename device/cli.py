"""`device`: the command line on the Pi. Each sub-command lives in `device/commands/<name>.py`."""
from __future__ import annotations

import sys
from typing import Sequence

from device.subcommands import run_cli

COMMANDS = ("info", "classify", "bench", "run", "agent")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("device", "Classify images on the device with a .tflite model.", "device.commands", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
