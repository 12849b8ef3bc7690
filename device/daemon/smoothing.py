"""Score smoothing across frames, so a label does not flicker when one frame is ambiguous."""
from __future__ import annotations

from collections import deque
from typing import Protocol

import numpy as np


class Smoother(Protocol):
    def update(self, scores: np.ndarray) -> np.ndarray:
        """Add this frame's scores and return the smoothed ones."""


class NoSmoothing:
    def update(self, scores: np.ndarray) -> np.ndarray:
        return scores


class WindowAverage:
    """The mean of the scores of the last `frames` frames."""

    def __init__(self, frames: int) -> None:
        self._window: deque[np.ndarray] = deque(maxlen=frames)

    def update(self, scores: np.ndarray) -> np.ndarray:
        self._window.append(np.asarray(scores, dtype=np.float32))
        return np.mean(self._window, axis=0, dtype=np.float32)


class ExponentialAverage:
    """An exponential moving average: each new frame weighs `alpha`, the past `1 - alpha`."""

    def __init__(self, alpha: float) -> None:
        self._alpha = alpha
        self._average: np.ndarray | None = None

    def update(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float32)
        if self._average is None:
            self._average = scores.copy()
        else:
            self._average = self._alpha * scores + (1.0 - self._alpha) * self._average
        return self._average


def make_smoother(window: int = 0, alpha: float | None = None) -> Smoother:
    """`window` > 1 averages that many frames; `alpha` picks an exponential average; neither: no smoothing."""
    if alpha is not None:
        return ExponentialAverage(alpha)
    if window > 1:
        return WindowAverage(window)
    return NoSmoothing()
