"""Small rules for the child processes and servers tests and benchmarks start."""
from __future__ import annotations

import os
import select
import signal
import socket
import time
from typing import IO, Callable


def default_sigint() -> None:
    """A `preexec_fn` for a child the test will Ctrl-C: started from a shell's background job, it would
    inherit SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float = 30.0, step: float = 0.1) -> bool:
    """Whether `condition()` came true within `timeout` seconds, asked every `step` seconds and once more at the
    end: for what a test waits on in another process or thread."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def read_until(pipe: IO[str], text: str, timeout: float) -> str:
    """What a child wrote to `pipe` up to and including `text` (or until it closed it, or `timeout`), read
    straight from the descriptor, so that a later `communicate()` gets all the rest."""
    said, deadline = b"", time.monotonic() + timeout
    while text.encode() not in said:
        ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(pipe.fileno(), 4096) if ready else b""
        if not chunk:
            break
        said += chunk
    return said.decode(errors="replace")
