"""Work done a few items ahead in threads: decoding (which releases the GIL) keeps pace with an interpreter."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_ahead(function: Callable[[Item], Result], items: Iterable[Item], workers: int = 2,
              ahead: int = 8) -> Iterator[tuple[Item, Result]]:
    """Yield `(item, function(item))` in order, with up to `ahead` calls running or done in advance.

    The window is bounded, so a large folder is never decoded into memory all at once; exceptions
    surface when their item's turn comes.
    """
    pool = ThreadPoolExecutor(workers, thread_name_prefix="ahead")
    try:
        queued: deque[tuple[Item, Future]] = deque()
        remaining = iter(items)
        for item in remaining:
            queued.append((item, pool.submit(function, item)))
            if len(queued) >= ahead:
                break
        while queued:
            item, future = queued.popleft()
            for following in remaining:
                queued.append((following, pool.submit(function, following)))
                break
            yield item, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
