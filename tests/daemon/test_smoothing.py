"""Score smoothing over the last N frames or by exponential moving average."""
from __future__ import annotations

import numpy as np
import pytest

from device.daemon.smoothing import ExponentialAverage, NoSmoothing, WindowAverage, make_smoother


def test_window_average_is_the_mean_of_the_last_n_frames():
    smoother = WindowAverage(3)
    frames = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.array([0.0, 1.0])]
    results = [smoother.update(scores) for scores in frames]
    np.testing.assert_allclose(results[0], [1.0, 0.0])
    np.testing.assert_allclose(results[1], [0.5, 0.5])
    np.testing.assert_allclose(results[2], [1 / 3, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(results[3], [0.0, 1.0])  # the first frame has left the window


def test_exponential_average_weighs_the_new_frame_by_alpha():
    smoother = ExponentialAverage(0.25)
    np.testing.assert_allclose(smoother.update(np.array([1.0, 0.0])), [1.0, 0.0])
    np.testing.assert_allclose(smoother.update(np.array([0.0, 1.0])), [0.75, 0.25])
    np.testing.assert_allclose(smoother.update(np.array([0.0, 1.0])), [0.5625, 0.4375])


def test_one_odd_frame_does_not_flip_the_smoothed_top_label():
    smoother = make_smoother(window=5)
    steady, odd = np.array([0.8, 0.2]), np.array([0.1, 0.9])
    for _ in range(4):
        smoother.update(steady)
    assert np.argmax(smoother.update(odd)) == 0
    assert np.argmax(NoSmoothing().update(odd)) == 1


@pytest.mark.parametrize("window, alpha, kind", [(0, None, NoSmoothing), (1, None, NoSmoothing),
                                                 (4, None, WindowAverage), (0, 0.3, ExponentialAverage)])
def test_make_smoother_picks_the_kind(window, alpha, kind):
    assert isinstance(make_smoother(window, alpha), kind)
