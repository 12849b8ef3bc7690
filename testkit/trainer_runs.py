"""Whole `trainer train` runs, each in its own process as a user starts it, for benchmarks and tests of scale."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from device.cache import cache_root
from testkit.peak_memory import Measured, run_measured

REPO = Path(__file__).resolve().parent.parent


def cold_feature_cache(base: Path) -> Path:
    """A new $BLOOMKIT_CACHE under `base` holding only this user's converted backbones (linked): the state
    after any first run, with no photo's features cached yet."""
    cache = Path(tempfile.mkdtemp(dir=base, prefix="cache-"))
    (cache / "backbones").symlink_to(cache_root() / "backbones")
    return cache


def train_measured(data: Path, export: Path, cache: Path, *options: str, timeout: float | None = None) -> Measured:
    """`trainer train --json` on `data` with `cache` as $BLOOMKIT_CACHE: its output, wall time and peak RSS."""
    return run_measured([sys.executable, "-m", "trainer.cli", "train", "--data", str(data), "--export-dir",
                         str(export), "--json", *options], env={**os.environ, "BLOOMKIT_CACHE": str(cache)},
                        cwd=REPO, timeout=timeout)
