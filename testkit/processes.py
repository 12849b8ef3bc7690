"""Small rules for the child processes and servers tests and benchmarks start."""
from __future__ import annotations

import signal
import socket


def default_sigint() -> None:
    """A `preexec_fn` for a child the test will Ctrl-C: started from a shell's background job, it would
    inherit SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
