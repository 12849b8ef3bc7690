"""Which devices a staged rollout reaches: a stable hash of the device id against the percentage.

The same device always falls in the same place (0 ≤ bucket < 100), so widening 10% → 50% keeps the first
wave and adds to it, and `fab publish` can tell which reporting devices were in a wave.
"""
from __future__ import annotations

import hashlib

BUCKETS = 10_000   # hundredths of a percent


def bucket(device_id: str) -> float:
    """Where the device sits in [0, 100): the first 8 hex digits of sha256(id), scaled."""
    value = int(hashlib.sha256(device_id.encode()).hexdigest()[:8], 16) % BUCKETS
    return value / (BUCKETS / 100)


def in_rollout(device_id: str, percent: float) -> bool:
    return bucket(device_id) < percent
