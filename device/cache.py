"""The one cache root every bloomkit cache lives under (converted weights, wheelhouses, the arm64 rootfs)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$BLOOMKIT_CACHE`, else `$XDG_CACHE_HOME/bloomkit` (by default `~/.cache/bloomkit`)."""
    configured = os.environ.get("BLOOMKIT_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bloomkit"
