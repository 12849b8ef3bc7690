"""`map_ahead`: results in order, a bounded window of work in advance, errors at their item's turn."""
from __future__ import annotations

import threading

import pytest

from device.prefetch import map_ahead


def test_results_come_in_order_with_at_most_ahead_items_started_early():
    started, lock = [], threading.Lock()

    def work(item: int) -> int:
        with lock:
            started.append(item)
        return item * item

    consumed = []
    for item, result in map_ahead(work, range(40), workers=3, ahead=5):
        assert result == item * item
        with lock:
            assert len(started) - len(consumed) - 1 <= 5   # beyond the item in hand, at most the window
        consumed.append(item)
    assert consumed == list(range(40))


def test_an_error_surfaces_when_its_item_comes_up():
    def work(item: int) -> int:
        if item == 3:
            raise ValueError("item 3 is bad")
        return item

    results = map_ahead(work, range(10))
    assert [next(results)[1] for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="item 3 is bad"):
        next(results)
