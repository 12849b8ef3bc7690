"""Which frames `device run` keeps as samples: the sampling policy, a pure function of the scores.

The rules say why a frame is worth a person's look (the model is unsure, two labels are close, the
label just changed, a random share for an unbiased view); `--collect-labels` narrows them to some
labels; the caps bound how many a minute, an hour and a day. Time and randomness come in as
arguments, so every rule is tested without a clock or a camera.
"""
from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from device.errors import UserError

DEFAULT_BAND = (0.0, 0.6)  # with no rule given: keep the frames whose top score is below 0.6
# The reasons a frame is kept, in the order a sample's primary reason is picked (and metrics count it).
REASONS = ("change", "uncertain", "margin", "label", "random")
CAPS = (("minute", 60.0), ("hour", 3600.0), ("day", 86400.0))


class SamplingError(UserError):
    """A sampling option that cannot be used (a band upside down, a rate above 1, a negative cap)."""


@dataclass(frozen=True)
class Policy:
    """The rules (any one keeps a frame), the label filter and the caps."""

    band: tuple[float, float] | None = DEFAULT_BAND
    margin: float | None = None
    labels: frozenset[str] | None = None
    random_rate: float = 0.0
    on_change: bool = False
    caps: tuple[tuple[int | None, float], ...] = ()  # (at most N, per seconds)

    @property
    def has_rule(self) -> bool:
        return self.band is not None or self.margin is not None or self.random_rate > 0 or self.on_change


def policy_from(uncertain: str | None = None, margin: float | None = None, labels: str | Sequence[str] | None = None,
                random_rate: float | None = None, on_change: bool = False,
                max_per: Sequence[int | None] = (None, None, None)) -> Policy:
    """A checked Policy from the option values (a `SamplingError` names the option that is wrong).

    With no rule and no label filter, the default band applies; with only `labels`, every frame of
    those labels is kept (up to the caps).
    """
    band = _band(uncertain) if uncertain is not None else None
    if margin is not None and not 0.0 < margin <= 1.0:
        raise SamplingError(f"--collect-margin {margin}: must be in (0, 1]")
    if random_rate is not None and not 0.0 <= random_rate <= 1.0:
        raise SamplingError(f"--collect-random {random_rate}: a fraction of the frames, from 0 to 1")
    caps = []
    for (period, seconds), limit in zip(CAPS, max_per):
        if limit is not None and limit < 0:
            raise SamplingError(f"--collect-max-per-{period} {limit}: must not be negative")
        caps.append((limit, seconds))
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",")]
    chosen = frozenset(label for label in labels or () if label) or None
    policy = Policy(band, margin, chosen, random_rate or 0.0, bool(on_change), tuple(caps))
    if not policy.has_rule and chosen is None:
        policy = Policy(DEFAULT_BAND, None, None, 0.0, False, tuple(caps))
    return policy


def _band(text: str) -> tuple[float, float]:
    low, sep, high = str(text).partition(":")
    try:
        band = (float(low), float(high)) if sep else None
    except ValueError:
        band = None
    if band is None:
        raise SamplingError(f"--collect-uncertain {text}: expected LO:HI, as in 0.3:0.7")
    if not 0.0 <= band[0] < band[1] <= 1.0:
        raise SamplingError(f"--collect-uncertain {text}: need 0 <= LO < HI <= 1")
    return band


def reasons(policy: Policy, scores: np.ndarray, labels: Sequence[str], previous_top: str | None,
            draw: float) -> list[str]:
    """Why this frame is worth keeping (empty: it is not), in `REASONS` order.

    `previous_top` is the last frame's top label (None for the first frame), `draw` a uniform number
    in [0, 1) for the random rule.
    """
    order = np.argsort(scores)[::-1]
    top = labels[order[0]]
    if policy.labels is not None and top not in policy.labels:
        return []
    best = float(scores[order[0]])
    second = float(scores[order[1]]) if len(order) > 1 else 0.0
    fired = []
    if policy.on_change and top != previous_top:
        fired.append("change")
    if policy.band is not None and policy.band[0] <= best <= policy.band[1]:
        fired.append("uncertain")
    if policy.margin is not None and best - second < policy.margin:
        fired.append("margin")
    if policy.labels is not None and not policy.has_rule:
        fired.append("label")
    if draw < policy.random_rate:
        fired.append("random")
    return fired


class Caps:
    """Sliding-window counts of the samples taken, one window per cap; `full()` names the cap reached."""

    def __init__(self, caps: Sequence[tuple[int | None, float]]) -> None:
        self._caps = [(limit, seconds, deque()) for limit, seconds in caps if limit is not None]

    def full(self, now: float) -> str | None:
        for limit, seconds, times in self._caps:
            while times and now - times[0] >= seconds:
                times.popleft()
            if len(times) >= limit:
                return f"cap_per_{_period(seconds)}"
        return None

    def take(self, now: float) -> None:
        for _, _, times in self._caps:
            times.append(now)


def _period(seconds: float) -> str:
    return next(name for name, length in CAPS if length == seconds)


class Sampler:
    """The policy over a stream of frames: remembers the last top label, draws the random numbers, keeps the caps."""

    def __init__(self, policy: Policy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._rng = rng or random.Random()
        self._caps = Caps(policy.caps)
        self._previous_top: str | None = None

    def consider(self, scores: np.ndarray, labels: Sequence[str], now: float) -> tuple[list[str], str | None]:
        """(reasons to keep this frame, the cap that forbids it or None); call `taken` once it is kept."""
        fired = reasons(self.policy, scores, labels, self._previous_top,
                        self._rng.random() if self.policy.random_rate else 1.0)
        self._previous_top = labels[int(np.argmax(scores))]
        return fired, (self._caps.full(now) if fired else None)

    def taken(self, now: float) -> None:
        """Count a kept frame toward the caps (a frame dropped for lack of room does not count)."""
        self._caps.take(now)
