"""Rollout membership: a stable hash of the device id, so waves nest and are about the size asked for."""
from __future__ import annotations

from device.agent.rollout import bucket, in_rollout


def test_waves_nest_and_have_the_share_asked_for():
    ids = [f"pi-{i:05d}" for i in range(10_000)]
    waves = {p: {d for d in ids if in_rollout(d, p)} for p in (0, 10, 50, 100)}
    assert waves[0] == set() and waves[100] == set(ids)
    assert waves[10] < waves[50] < waves[100]
    assert 900 < len(waves[10]) < 1100 and 4800 < len(waves[50]) < 5200
    assert bucket("greenhouse-1") == bucket("greenhouse-1")      # the same on every run and machine
    assert bucket("greenhouse-1") == 85.19                     # sha256 pins it: no salt, no seed
