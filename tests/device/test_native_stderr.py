"""Native stderr filtering: notices dropped, everything else kept, one capture at a time across threads."""
from __future__ import annotations

import os
import threading

from device import native_stderr


def noise(line: str) -> bool:
    return line.startswith("noise")


def test_dropped_lines_go_and_the_rest_stays(capfd):
    with native_stderr.filtered(noise):
        os.write(2, b"noise: a C++ notice\nsomething that matters\n")
    assert capfd.readouterr().err == "something that matters\n"


def test_two_threads_capturing_at_once_neither_leaks_nor_loses_stderr(capfd):
    """Unserialized, a capture begun inside another and ended after it would restore the first one's
    temporary file as descriptor 2: everything written afterwards would be lost."""
    inside, first_done = threading.Event(), threading.Event()

    def second():
        with native_stderr.filtered(noise):
            inside.set()
            first_done.wait(5)
            os.write(2, b"noise from the second thread\n")

    with native_stderr.filtered(noise):
        thread = threading.Thread(target=second)
        thread.start()
        inside.wait(0.5)   # serialized, the second thread cannot get inside yet
        os.write(2, b"noise from the first thread\n")
    first_done.set()
    thread.join()
    os.write(2, b"after both\n")
    assert capfd.readouterr().err == "after both\n"
