"""`device run`'s collection options (`--collect*`): what to keep, how many, and in how much space.

They are flags and config-file keys like every other option (`device.daemon.config` merges them); this
module holds their definitions and checks, so that every bad value fails at start in one line.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from device.daemon.sampling import CAPS, Policy, policy_from
from device.errors import UserError
from device.metadata import labels as labels_txt
from device.options import check_number
from device.samples import SAMPLES_FOLDER


class CollectError(UserError):
    """`--collect` cannot start: no folder given and no --data-dir to put one in."""


@dataclass(frozen=True)
class CollectSettings:
    """The `--collect*` options; each field is the option without its `collect` prefix (`folder` is `--collect`)."""

    folder: str | None = None  # None: off; "": samples/ in the data directory
    uncertain: str | None = None
    margin: float | None = None
    labels: tuple[str, ...] | None = None
    random: float | None = None
    on_change: bool = False
    max_per_minute: int | None = None
    max_per_hour: int | None = None
    max_per_day: int | None = None
    budget_mb: float = 200.0

    def __post_init__(self) -> None:
        check_number("--collect-budget-mb", self.budget_mb, above=0)
        self.policy  # checks the rules and caps

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> CollectSettings:
        values = {f.name: options[_option(f.name)] for f in fields(cls) if options.get(_option(f.name)) is not None}
        if "labels" in values:  # as `device classify` takes labels: repeated, comma-separated
            values["labels"] = labels_txt.from_options(values["labels"])
        return cls(**values)

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    @property
    def policy(self) -> Policy:
        return policy_from(self.uncertain, self.margin, self.labels, self.random, self.on_change,
                           (self.max_per_minute, self.max_per_hour, self.max_per_day))

    @property
    def budget_bytes(self) -> int:
        return int(self.budget_mb * 1e6)

    def samples_folder(self, data_dir: Path | None) -> Path:
        """The folder given, else samples/ in the data directory; neither is a one-line error."""
        if self.folder:
            return Path(self.folder)
        if data_dir is None:
            raise CollectError("--collect needs a folder: give --collect DIR, or --data-dir DIR "
                               f"to keep samples in DIR/{SAMPLES_FOLDER}")
        return Path(data_dir) / SAMPLES_FOLDER


def _option(name: str) -> str:
    return "collect" if name == "folder" else f"collect_{name}"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The `--collect*` flags of `device run` (every default None, as `config.add_options` needs)."""
    group = parser.add_argument_group("collecting samples for retraining")
    add = group.add_argument
    add("--collect", nargs="?", const="", metavar="DIR",
        help="keep samples (frames and scores) in DIR (default: samples/ in --data-dir)")
    add("--collect-uncertain", metavar="LO:HI", help="keep frames whose top score is within LO..HI (the default rule: 0:0.6)")
    add("--collect-margin", type=float, metavar="M", help="keep frames whose two best scores are closer than M")
    add("--collect-labels", action="append", metavar="A,B",
        help="only frames whose top label is one of these (alone: every such frame)")
    add("--collect-random", type=float, metavar="RATE", help="keep this fraction of all frames")
    add("--collect-on-change", action="store_true", default=None, help="keep the first frame of a new top label")
    for period, _ in CAPS:
        add(f"--collect-max-per-{period}", type=int, metavar="N", help=f"keep at most N samples a {period}")
    add("--collect-budget-mb", type=float, metavar="MB",
        help="the samples folder's size limit; the oldest go first (default 200)")
