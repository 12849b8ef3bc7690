"""Filter what native libraries write straight to file descriptor 2 (TensorFlow's and LiteRT's start-up
notices), which Python's own `sys.stderr` and logging filters never see."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from typing import Callable, Iterator

# One capture at a time: two threads swapping descriptor 2 would each restore the other's capture.
_capturing = threading.RLock()


@contextlib.contextmanager
def filtered(drop: Callable[[str], bool]) -> Iterator[None]:
    """Capture descriptor 2 during the block, then write back every line that `drop` does not match."""
    with _capturing:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all
            yield
            return
        with tempfile.TemporaryFile() as captured:
            sys.stderr.flush()
            os.dup2(captured.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                lines = captured.read().decode(errors="replace").splitlines(keepends=True)
                sys.stderr.write("".join(line for line in lines if not drop(line)))
                sys.stderr.flush()
